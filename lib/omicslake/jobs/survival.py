"""Job survival: time to the cohort's outcome with censoring (MLlib AFTSurvivalRegression, Weibull).

Joins gold.features_<cohort> to gold.cohort_<cohort> (time_days, event: the outcome within the
horizon, else censored at death, end of data or the horizon), splits patients by the same seeded
hash of person_key as train, fits the shared preprocessing + AFT on the training split and
measures Harrell's concordance index on the held-out split (and on the training split, to show
over-fitting). Risk groups are tertiles of the training split's linear predictor; Kaplan-Meier
curves of the held-out split by risk group go to MLflow as a PNG. Writes
``gold.survival_<cohort>`` (person_key, index_date, split, log_predicted_time,
predicted_median_days, risk_group, time_days, event, model name/version, input_version, run_id)
and registers the model (alias from config).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="survival",
    description="Fit a censored time-to-event model (MLlib AFT) on gold.features_<cohort>; held-out concordance index -> gold.survival_<cohort>.",
    after=("build_cohort",),
    config=("jobs.survival", "mlflow"),
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def model_name(cohort: str, registered: str | None = None) -> str:
    return registered or f"omicslake_{cohort}_aft"


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    import mlflow

    from omicslake.ml import model as M
    from omicslake.ml import survival as S
    from omicslake.ml.plots import km_plot
    from omicslake.ml.tracking import log_files, log_model, register, setup, tracked_run

    c = cfg.jobs.survival
    table, cohort_table = f"gold.features_{c.cohort}", f"gold.cohort_{c.cohort}"
    for t in (table, cohort_table):
        if not lake.exists(t):
            raise InputError(f"{t} does not exist: run build_cohort (cohort {c.cohort}) first")
    version = lake.version(table)
    feats = lake.read(table, version=version)
    outcome = lake.read(cohort_table).select("person_key", "time_days", "event")
    bad = outcome.where(F.col("time_days").isNull() | F.col("event").isNull() | (F.col("time_days") < 0)).count()
    if bad:
        raise InputError(
            f"{cohort_table}: {bad} persons without a usable time_days/event (null or negative); rebuild the cohort"
        )
    # AFT needs time > 0: an exit on the index day (e.g. death) counts as half a day
    data = (
        feats.drop("time_days", "event")
        .join(outcome, "person_key")
        .withColumn("time", F.greatest(F.col("time_days").cast("double"), F.lit(0.5)))
        .withColumn("event", F.col("event").cast("double"))
        .withColumn("split", M.split_column(c.seed, c.test_fraction))
    )
    cols = M.feature_columns(feats, c.include, c.exclude)
    train = data.where("split = 'train'").cache()
    cols, empty = M.drop_empty(train, cols)
    if not cols.all:
        raise InputError(
            f"no feature columns left in {table} after include {list(c.include)} and exclude {list(c.exclude)}"
        )
    counts = {
        r["split"]: (int(r["n"]), int(r["events"] or 0))
        for r in data.groupBy("split").agg(F.count(F.lit(1)).alias("n"), F.sum("event").alias("events")).collect()
    }
    n_train, ev_train = counts.get("train", (0, 0))
    n_test, ev_test = counts.get("test", (0, 0))
    if ev_train == 0 or n_test == 0:
        raise InputError(
            f"{table}: {n_train} training persons with {ev_train} events and {n_test} held out; the model needs events and a test split"
        )
    fitted = S.pipeline(cols).fit(train)
    pred = (
        fitted.transform(data)
        .withColumn("lp", S.linear_predictor())
        .withColumn("predicted_median_days", vector_to_array("quantiles").getItem(0))
        .cache()
    )
    pred = pred.withColumn("risk_group", S.risk_group(S.risk_cuts(pred.where("split = 'train'"))))
    c_test, pairs_test = S.concordance(pred.where("split = 'test'"))
    c_train, _ = S.concordance(pred.where("split = 'train'"))
    km = S.kaplan_meier(pred.where("split = 'test'"), "risk_group")
    weights = M.importances(fitted)
    aft = fitted.stages[-1]
    name = model_name(c.cohort, c.registered_model)
    experiment = setup(cfg)
    with tracked_run(experiment, f"{c.cohort}-aft-{lake.run_id}", lake.run_id, NAME, cohort=c.cohort, table=table) as r:
        mlflow.log_params(
            {
                "model": "aft_weibull",
                "cohort": c.cohort,
                "table": table,
                "table_version": version,
                "seed": c.seed,
                "test_fraction": c.test_fraction,
                "n_features": len(cols.all),
                "n_empty_features_dropped": len(empty),
                "exclude": json.dumps(list(c.exclude)),
            }
        )
        mlflow.log_metrics(
            {
                "test_c_index": c_test if c_test is not None else float("nan"),
                "train_c_index": c_train if c_train is not None else float("nan"),
                "test_comparable_pairs": float(pairs_test),
                "n_train": float(n_train),
                "n_test": float(n_test),
                "events_train": float(ev_train),
                "events_test": float(ev_test),
                "scale": float(aft.scale),
                "intercept": float(aft.intercept),
            }
        )
        log_files(
            plots=lambda folder: [km_plot(km, c_test, folder, f"{c.cohort} (held-out, n={n_test:,})")],
            metrics={
                "coefficients.json": {
                    "intercept": float(aft.intercept),
                    "scale": float(aft.scale),
                    "coefficients": weights,
                },
                # compact: a curve per risk group
                "kaplan_meier.json": json.dumps({g: {k: v.tolist() for k, v in cur.items()} for g, cur in km.items()}),
            },
        )
        info = log_model(fitted, name)
        run_id = r.info.run_id
    mv = register(name, run_id, c.alias)
    out = pred.select(
        "person_key",
        "index_date",
        "split",
        F.col("lp").alias("log_predicted_time"),
        "predicted_median_days",
        "risk_group",
        "time_days",
        F.col("event").cast("int").alias("event"),
        F.lit(name).alias("model_name"),
        F.lit(int(mv.version)).alias("model_version"),
        F.lit(version).cast("bigint").alias("input_version"),
        F.lit(lake.run_id).alias("run_id"),
    )
    w = lake.write(out, f"gold.survival_{c.cohort}", mode="overwrite", merge_schema=True)
    pred.unpersist()
    train.unpersist()
    log.info(
        "%s: AFT on %d persons (%d events); held-out C-index %.3f (n=%d, %d events), training %.3f",
        table,
        n_train,
        ev_train,
        c_test or float("nan"),
        n_test,
        ev_test,
        c_train or float("nan"),
    )
    return {
        "test_c_index": None if c_test is None else round(c_test, 4),
        "train_c_index": None if c_train is None else round(c_train, 4),
        "n_train": n_train,
        "n_test": n_test,
        "events_train": ev_train,
        "events_test": ev_test,
        "scale": round(float(aft.scale), 4),
        "persons": w.rows,
        "table_version": version,
        "registered_model": name,
        "model_version": int(mv.version),
        "mlflow_run_id": run_id,
        "model_uri": info.model_uri,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
