"""Job score: a registered model (by version or alias) scores gold.features_<cohort> in batch ->
gold.predictions_<model>.

One row per (person_key, model_version, input_version): scoring the same snapshot with the same
model version again finds every key present and commits nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="score",
    description="Score gold.features_<cohort> with a registered MLflow model (version or alias) -> gold.predictions_<model>.",
    after=("train",),
    config=("jobs.score", "jobs.train.model", "jobs.train.registered_model", "mlflow"),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
KEYS = ["person_key", "model_version", "input_version"]


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    import mlflow

    from omicslake.jobs.train import model_name
    from omicslake.ml.model import scores
    from omicslake.ml.tracking import setup

    c = cfg.jobs.score
    setup(cfg)
    name = c.model or model_name(c.cohort, cfg.jobs.train.model, cfg.jobs.train.registered_model)
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version(name, str(c.version)) if c.version is not None else client.get_model_version_by_alias(name, c.alias)
    except mlflow.exceptions.MlflowException as exc:
        which = f"version {c.version}" if c.version is not None else f"alias {c.alias!r}"
        raise InputError(f"registered model {name!r} has no {which} in {mlflow.get_tracking_uri()}: run train first, or set jobs.score.version/alias") from exc
    lake.use_model(name, f"version {c.version}" if c.version is not None else f"alias {c.alias}", mv.version)
    table = f"gold.features_{c.cohort}"
    if not lake.exists(table):
        raise InputError(f"{table} does not exist: run build_cohort first")
    version = lake.version(table)
    df = lake.read(table, version=version)
    target = f"gold.predictions_{name}"
    if lake.exists(target):
        done = lake.read(target).where((F.col("model_version") == int(mv.version)) & (F.col("input_version") == version)).limit(1).count()
        if done:
            log.info("%s v%s already scored %s version %s: nothing to do", name, mv.version, table, version)
            return {"model": name, "model_version": int(mv.version), "input_version": version, "scored": 0}
    model = mlflow.spark.load_model(f"models:/{name}/{mv.version}")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    out = scores(model, df).select(
        "person_key", F.col("p").alias("score"), F.col("label").cast("int").alias("label"),
        F.lit(name).alias("model_name"), F.lit(int(mv.version)).alias("model_version"), F.lit(now).cast("timestamp").alias("scored_at"),
        F.lit(table).alias("input_table"), F.lit(version).cast("bigint").alias("input_version"), F.lit(lake.run_id).alias("run_id"),
    )
    w = lake.write(out, target, mode="merge", keys=KEYS)
    log.info("%s v%s scored %d persons of %s version %s", name, mv.version, w.rows, table, version)
    return {"model": name, "model_version": int(mv.version), "input_version": version, "scored": w.rows}


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
