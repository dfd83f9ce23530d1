"""Job score: a registered model (by version or alias) scores gold.features_<cohort> in batch ->
gold.predictions_<model>.

Each row: the calibrated risk (the model's output through the calibration logged with it), its
band (jobs.score.band_thresholds / band_names), the model's own output, the model and input
versions, and every feature's contribution and the top-k reasons in words: for the logistic model
coefficient x standardised value (``omicslake.ml.risk.LinearRisk``), for GBT and random forest
SHAP values (``omicslake.ml.shap_trees``: GBT in log-odds, random forest in probability).

One row per (person_key, model_version, input_version): scoring the same snapshot with the same
model version again finds every key present and commits nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io import faults, files
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.ml.risk import Calibration, LinearRisk, feature_words

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

    from omicslake.ml.model import scores
    from omicslake.ml.risk import (
        REASON,
        band_column,
        check_bands,
        drift_metrics,
        explain,
        lab_units,
        units_file,
    )
    from omicslake.ml.shap_trees import OUT_SCHEMA, TreeRisk, explain_frame, tree_kind
    from omicslake.ml.tracking import model_reference, risk_metadata, scoring_model

    c = cfg.jobs.score
    check_bands(c.band_thresholds, c.band_names)
    name, mv = scoring_model(cfg)
    lake.use_model(name, model_reference(c.version, c.alias), mv.version)
    table = f"gold.features_{c.cohort}"
    if not lake.exists(table):
        raise InputError(f"{table} does not exist: run build_cohort first")
    version = lake.version(table)
    df = lake.read(table, version=version)
    target = f"gold.predictions_{name}"
    if lake.exists(target):
        done = (
            lake.read(target)
            .where((F.col("model_version") == int(mv.version)) & (F.col("input_version") == version))
            .limit(1)
            .count()
        )
        if done:
            log.info("%s v%s already scored %s version %s: nothing to do", name, mv.version, table, version)
            # a run killed between the predictions' commit and its page left the page missing or stale:
            # written again from the predictions (the same rows give the same page)
            meta = risk_metadata(name, mv.version)
            page = _page(cfg, lake, name, int(mv.version), table, version, _calibration(meta).method, meta)
            return {
                "model": name,
                "model_version": int(mv.version),
                "input_version": version,
                "scored": 0,
                **({"page": page} if page else {}),
            }
    model = mlflow.spark.load_model(f"models:/{name}/{mv.version}")
    faults.point(f"after load model {name} ({NAME})")  # the champion loaded, nothing written
    meta = risk_metadata(name, mv.version)
    calibration = _calibration(meta)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    scored = scores(model, df).withColumn("model_score", F.col("p"))
    risk = calibration.column(F.col("model_score"))
    out = scored.select(
        "person_key",
        risk.alias("risk"),
        band_column(risk, tuple(c.band_thresholds), tuple(c.band_names)).alias("risk_band"),
        "model_score",
        F.lit(calibration.method).alias("calibration"),
        F.col("label").cast("int").alias("label"),
        F.lit(name).alias("model_name"),
        F.lit(int(mv.version)).alias("model_version"),
        F.lit(now).cast("timestamp").alias("scored_at"),
        F.lit(table).alias("input_table"),
        F.lit(version).cast("bigint").alias("input_version"),
        F.lit(lake.run_id).alias("run_id"),
    )
    why: DataFrame | None = None
    if meta.get("linear"):
        linear = LinearRisk.from_dict(meta["linear"])
        why = df.select("person_key", *linear.features).mapInPandas(explain(linear, c.top_k), OUT_SCHEMA)
    elif tree_kind(model):
        units_path = units_file()
        lake.use_file(units_path)
        trees = TreeRisk.from_pipeline(model, lab_units(units_path))
        log.info("%s: SHAP reasons of %d trees (%s)", name, len(trees.trees), trees.output)
        why = explain_frame(model, trees, df, c.top_k)
    if why is not None:
        out = out.join(
            why.select(
                "person_key",
                F.from_json("contributions_json", "map<string,double>").alias("contributions"),
                F.from_json("reasons_json", f"array<{REASON}>").alias("reasons"),
            ),
            "person_key",
            "left",
        )
    else:
        out = out.withColumn("contributions", F.lit(None).cast("map<string,double>")).withColumn(
            "reasons", F.lit(None).cast(f"array<{REASON}>")
        )
    w = lake.write(out, target, mode="merge", keys=KEYS)
    log.info("%s v%s scored %d persons of %s version %s", name, mv.version, w.rows, table, version)
    drift = drift_metrics(
        df,
        lake.read(target).where((F.col("model_version") == int(mv.version)) & (F.col("input_version") == version)),
        meta.get("drift"),
        c.psi_warn,
    )
    for warning in drift.get("drift_warnings", []):
        log.warning("drift: %s", warning)
    page = _page(cfg, lake, name, int(mv.version), table, version, calibration.method, meta)
    return {
        "model": name,
        "model_version": int(mv.version),
        "input_version": version,
        "scored": w.rows,
        "calibration": calibration.method,
        **drift,
        **({"page": page} if page else {}),
    }


def _calibration(meta: dict[str, Any]) -> Calibration:
    """The recalibration map train stored with the model version (none: the model's output as is)."""
    return Calibration.from_dict(meta["calibration"]) if meta.get("calibration") else Calibration()


def _page(
    cfg: Config, lake: Lake, name: str, mv: int, table: str, version: int, method: str, meta: dict[str, Any]
) -> str | None:
    """``write_page`` for a logistic model when jobs.score.page_rows > 0 (its path), else None."""
    if not (meta.get("linear") and cfg.jobs.score.page_rows > 0):
        return None
    page = cfg.layout.portable(write_page(cfg, lake, name, mv, table, version, method))  # <root>/reports/...
    faults.point(f"after write page {name} ({NAME})")  # predictions and the risk page written, no audit row
    return page


def write_page(cfg: Config, lake: Lake, name: str, mv: int, table: str, version: int, method: str) -> str:
    """<lake>/reports/risk_<model>.html: the highest page_rows risks of this model version and input
    snapshot with their reasons, and each patient's recent labs (silver.measurement)."""
    from omicslake.ml.page import LAB_PAGE, risk_page
    from omicslake.ml.risk import lab_units, units_file

    c = cfg.jobs.score
    preds = (
        lake.read(f"gold.predictions_{name}")
        .where((F.col("model_version") == mv) & (F.col("input_version") == version))
        .orderBy(F.desc("risk"), "person_key")
        .limit(c.page_rows)
        .select("person_key", "risk", "risk_band", "reasons", "contributions")
        .collect()
    )
    labs: dict[str, list[dict[str, Any]]] = {}
    units_path = units_file()
    lake.use_file(units_path)
    units = lab_units(units_path)
    if preds and lake.exists("silver.measurement"):
        keys = [r.person_key for r in preds]
        index = (
            lake.read(table, version=version).where(F.col("person_key").isin(keys)).select("person_key", "index_date")
        )
        rows = (
            lake.read("silver.measurement")
            .where(
                F.col("person_key").isin(keys)
                & F.col("measurement_name").isin(list(LAB_PAGE))
                & F.col("value_as_number").isNotNull()
            )
            .join(index, "person_key")
            .where(
                (F.col("measurement_datetime") < F.col("index_date"))
                & (F.col("measurement_datetime") >= F.add_months(F.col("index_date"), -12 * c.page_lab_years))
            )
            .select(
                "person_key",
                "measurement_name",
                F.to_date("measurement_datetime").cast("string").alias("d"),
                "value_as_number",
            )
            .orderBy("person_key", "measurement_name", "d")
            .collect()
        )
        by: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for r in rows:
            by.setdefault((r.person_key, r.measurement_name), []).append((r.d, float(r.value_as_number)))
        for (k, lab), pts in by.items():
            labs.setdefault(k, []).append(
                {
                    "name": feature_words(f"lab_{lab}_last_365d", units).label.split(" (")[0],
                    "unit": units.get(lab, ""),
                    "points": pts[-20:],
                }
            )
    patients = [
        {
            "key": r.person_key,
            "risk": float(r.risk),
            "band": r.risk_band,
            "contributions": dict(r.contributions or {}),
            "reasons": [{"text": x.text, "contribution": x.contribution} for x in (r.reasons or [])],
        }
        for r in preds
    ]
    text = risk_page(
        f"{c.cohort}: risk list ({name} v{mv})",
        f"{len(patients)} highest risks of {table} version {version}; risks recalibrated ({method}); bands "
        f"{', '.join(c.band_names)} at {', '.join(f'{t:.0%}' for t in c.band_thresholds)}. Pseudonymous keys only.",
        patients,
        labs,
        list(c.band_names),
        units,
    )
    path = cfg.layout.reports(f"risk_{name}.html")  # a folder or an object store; whole or not at all
    files.write_text(path, text, cfg)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
