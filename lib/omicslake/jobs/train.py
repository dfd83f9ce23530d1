"""Job train: an MLlib pipeline on gold.features_<cohort>, tracked and registered in MLflow.

Patient-level split by a seeded hash of person_key into train, calibration and test;
cross-validation (jobs.train.folds) over the grid in config on the training split; the output recalibrated
(Platt or isotonic, jobs.train.calibration) on the calibration split and stored with the model;
held-out metrics (AUROC, AUPRC, Brier, calibration) overall and by sex,
age band and race; ROC, PR, calibration and feature-weight PNGs. MLflow gets the parameters,
metrics, the input as a Delta dataset (table path and version: ``reproduce`` re-reads exactly
that snapshot), the model with its signature and an input example (column medians and modes,
not a patient's row), the plots, and a new version of the registered model (with the alias
from config).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.frames import canonical
from omicslake.io import faults
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="train",
    description="Train an MLlib model on gold.features_<cohort> (split, tuning, metrics by subgroup), tracked and registered in MLflow.",
    after=("build_cohort",),
    config=("jobs.train", "mlflow"),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    # ridge and lasso at each strength: with ~150 features and few events per feature the ridge-only
    # grid kept every uninformative feature and missed the oracle bar at 20,000 patients (held-out
    # AUROC 0.774 vs the truth's 0.807); 3-fold cross-validation picks the lasso there (0.781-0.782 for
    # every seed tried; one 80/20 split picked either, test_ml_oracle.py)
    "logistic": {"regParam": [0.01, 0.03, 0.1, 0.3], "elasticNetParam": [0.0, 1.0]},
    "random_forest": {"numTrees": [50, 100], "maxDepth": [5, 8]},
    "gbt": {"maxIter": [30, 60], "maxDepth": [3, 5]},
}


def _input_example(df: DataFrame, numeric: list[str], categorical: list[str]) -> Any:
    """One synthetic row: the median of every numeric feature, the most common level of every
    string feature (no patient's values leave the lake in the model's example)."""
    import pandas as pd

    row: dict[str, Any] = {}
    if numeric:
        q = df.select(*[F.percentile_approx(F.col(c).cast("double"), 0.5, 1000).alias(c) for c in numeric]).first()
        assert q is not None
        row.update({c: q[c] for c in numeric})
    for c in categorical:
        top = df.groupBy(c).count().orderBy(F.col("count").desc(), F.col(c)).first()
        row[c] = top[0] if top is not None else None
    return pd.DataFrame([row]).astype({c: "float64" for c in numeric})


def prepare(spark: SparkSession, cfg: Config, lake: Lake, version: int | None) -> tuple[DataFrame, int, str]:
    c = cfg.jobs.train
    table = f"gold.features_{c.cohort}"
    if not lake.exists(table):
        raise InputError(f"{table} does not exist: run build_cohort (cohort {c.cohort}) first")
    v = version if version is not None else lake.version(table)
    assert v is not None
    df = lake.read(table, version=v)
    return df, v, table


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    import mlflow
    from mlflow.models import infer_signature

    from omicslake.ml import model as M
    from omicslake.ml.plots import model_plots
    from omicslake.ml.risk import (
        LinearRisk,
        calibration_metrics,
        drift_reference,
        fit_calibration,
        lab_units,
        units_file,
    )
    from omicslake.ml.tracking import counted, log_files, log_model, register, setup, tracked_run

    c = cfg.jobs.train
    df, version, table = prepare(spark, cfg, lake, c.input_version)
    # the same rows in other files (a rerun after a crash, a compaction) give the same splits' order,
    # the same calibration and the same model
    df = canonical(df, ["person_key"])
    cols = M.feature_columns(df, c.include, c.exclude)
    if not cols.all:
        raise InputError(
            f"no feature columns left in {table} after include {list(c.include)} and exclude {list(c.exclude)}"
        )
    grid = {k: list(v) for k, v in c.grid.items()} or DEFAULT_GRIDS[c.model]
    calib_fraction = c.calibration_fraction if c.calibration != "none" else 0.0
    data = df.withColumn("split", M.split_column(c.seed, c.test_fraction, calib_fraction)).withColumn(
        "label", F.col("label").cast("double")
    )
    cols, empty = M.drop_empty(data.where("split = 'train'"), cols)
    if empty:
        log.info("%d feature columns have no value in the training split and are left out: %s", len(empty), empty[:10])
    train = M.with_class_weights(data.where("split = 'train'"), c.class_weights).cache()
    test = data.where("split = 'test'").withColumn("_w", F.lit(1.0)).cache()
    calib_rows = data.where("split = 'calibration'").withColumn("_w", F.lit(1.0))
    (n_train, cases_train), (n_test, cases_test) = M.outcome_counts(train), M.outcome_counts(test)
    if n_train == 0 or n_test == 0:
        raise InputError(
            f"{table}: {n_train} training and {n_test} test rows; the split needs both (test_fraction={c.test_fraction})"
        )
    for split, n, cases in (("training", n_train, cases_train), ("test", n_test, cases_test)):
        if M.one_outcome(n, cases):
            raise InputError(
                f"{table}: the {split} split has {n} patients and {cases} with the outcome; fitting and the "
                f"held-out AUROC and calibration need both outcomes: a larger cohort, or another "
                f"jobs.train.test_fraction ({c.test_fraction})"
            )
    fitted, best, val_auc = M.tune(train, cols, c.model, grid, c.seed, folds=c.folds)
    # the model's output recalibrated on patients it never saw (neither training nor test)
    if c.calibration != "none":
        got = calib_rows.agg(F.count(F.lit(1)), F.sum("label")).first()
        assert got is not None
        n_cal, cases_cal = int(got[0]), int(got[1] or 0)
        if cases_cal == 0 or cases_cal == n_cal:
            raise InputError(
                f"{table}: the calibration split has {n_cal} patients and {cases_cal} with the outcome; a recalibration needs "
                f"both outcomes: raise jobs.train.calibration_fraction ({c.calibration_fraction}) or set jobs.train.calibration to none"
            )
    calibration = fit_calibration(M.scores(fitted, calib_rows), c.calibration)
    raw = M.scores(fitted, test)
    scored = raw.withColumnRenamed("p", "p_model").withColumn("p", calibration.column(F.col("p_model"))).cache()
    metrics = M.evaluate(scored)
    raw_cal = calibration_metrics(scored, p="p_model")  # the uncalibrated output, for comparison
    # the training data's distributions, for the drift checks of every later scoring batch
    drift = {
        "features": drift_reference(train, list(cols.numeric), list(cols.categorical)),
        "risk": drift_reference(
            M.scores(fitted, train).select(calibration.column(F.col("p")).alias("risk")), ["risk"], []
        )["risk"],
    }
    units_path = units_file()
    lake.use_file(units_path)
    units = lab_units(units_path)
    linear = LinearRisk.from_pipeline(fitted, units) if c.model == "logistic" else None
    sub = M.subgroups(
        scored,
        {
            "sex": F.when(F.col("female") == 1, "female").otherwise("male") if "female" in df.columns else F.lit("all"),
            "age_band": M.age_band(),
            "race": F.col("race") if "race" in df.columns else F.lit("all"),
        },
    )
    weights = M.importances(fitted)
    curve = M.curves(scored)
    name = M.model_name(c.cohort, c.model, c.registered_model)
    experiment = setup(cfg)
    with tracked_run(
        experiment, f"{c.cohort}-{c.model}-{lake.run_id}", lake.run_id, NAME, cohort=c.cohort, table=table
    ) as r:
        faults.point(f"after start run {name} ({NAME})")  # an MLflow run RUNNING, nothing logged to it
        mlflow.log_params(
            {
                "model": c.model,
                "cohort": c.cohort,
                "table": table,
                "table_version": version,
                "seed": c.seed,
                "test_fraction": c.test_fraction,
                "folds": c.folds,
                "class_weights": c.class_weights,
                "calibration": c.calibration,
                "calibration_fraction": calib_fraction,
                "n_calibration": calibration.n,
                "n_features": len(cols.all),
                "n_empty_features_dropped": len(empty),
                "include": json.dumps(list(c.include)),
                "exclude": json.dumps(list(c.exclude)),
                "grid": json.dumps(grid),
                **{f"best_{k}": v for k, v in best.items()},
            }
        )
        scalar = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        mlflow.log_metrics(
            {f"test_{k}": float(v) for k, v in scalar.items()}
            | ({"validation_auroc": val_auc} if val_auc is not None else {})
            | {"n_train": float(n_train)}
            | {
                f"test_uncalibrated_{k}": float(raw_cal[k])
                for k in ("intercept", "slope", "brier", "mean_risk")
                if raw_cal[k] is not None
            }
            | (
                {"calibration_a": calibration.a, "calibration_b": calibration.b}
                if calibration.method == "platt"
                else {}
            )
        )
        for s in sub:
            if s["auroc"] is not None:
                mlflow.log_metric(
                    f"auroc_{s['group']}_{s['level']}".replace(" ", "_").replace("<", "lt").replace("+", "plus"),
                    s["auroc"],
                )
        faults.point(f"after log metrics {name} ({NAME})")  # params and metrics logged, no artifact
        source = lake.location(table) if not lake.qualified(table) else None  # a path or a URI
        ds = (
            mlflow.data.load_delta(path=source, version=version, name=table)
            if source
            else mlflow.data.load_delta(table_name=lake.qualified(table), version=version)
        )
        mlflow.log_input(counted(ds, n_train + n_test + calibration.n), context="training")
        log_files(
            plots=lambda folder: model_plots(metrics, curve, weights, folder, f"{c.cohort} {c.model}").values(),
            metrics={
                "subgroups.json": sub,
                "calibration.json": {
                    "calibrated": {
                        "method": calibration.method,
                        "intercept": metrics["calibration_intercept"],
                        "slope": metrics["calibration_slope"],
                        "brier": metrics["brier"],
                        "curve": metrics["calibration_curve"],
                    },
                    "uncalibrated": {k: raw_cal[k] for k in ("intercept", "slope", "brier", "mean_risk", "curve")},
                    "map": calibration.to_dict(),
                },
                "feature_weights.json": weights,
                "features.json": json.dumps({"numeric": list(cols.numeric), "categorical": list(cols.categorical)}),
            },
        )
        faults.point(f"after log files {name} ({NAME})")  # the input, plots and metric files logged, no model
        example = _input_example(train, list(cols.numeric), list(cols.categorical))
        signature = infer_signature(example, [0.5])
        # the calibration and (logistic) the model as numbers travel with the model: score and serve apply them
        meta = {
            "omicslake_risk": {
                "calibration": calibration.to_dict(),
                "linear": linear.to_dict() if linear else None,
                "features": {"numeric": list(cols.numeric), "categorical": list(cols.categorical)},
                "cohort": c.cohort,
                "table": table,
                "table_version": version,
                "drift": drift,
            }
        }
        info = log_model(fitted, name, signature=signature, input_example=example, metadata=meta)
        run_id = r.info.run_id
        faults.point(f"after log model {name} ({NAME})")  # a new version registered, its alias not moved
    mv = register(name, run_id, c.alias)
    faults.point(f"after register {name} ({NAME})")  # the alias moved, no audit row yet
    metrics["uncalibrated_calibration_intercept"], metrics["uncalibrated_calibration_slope"] = (
        raw_cal["intercept"],
        raw_cal["slope"],
    )
    metrics["uncalibrated_brier"] = raw_cal["brier"]
    for d in (train, test, scored):
        d.unpersist()
    out = {
        "mlflow_run_id": run_id,
        "registered_model": name,
        "model_version": int(mv.version),
        "table_version": version,
        "n_train": n_train,
        "n_test": n_test,
        "n_features": len(cols.all),
        "validation_auroc": round(val_auc, 4) if val_auc is not None else None,  # None: a one-point grid, no folds
        **{
            f"test_{k}": (round(v, 4) if isinstance(v, float) else v)
            for k, v in metrics.items()
            if k != "calibration_curve"
        },
        "best_params": best,
        "model_uri": info.model_uri,
    }
    log.info(
        "model %s v%s: test AUROC %.3f, AUPRC %.3f, Brier %.3f (n=%d)",
        name,
        mv.version,
        metrics["auroc"] or float("nan"),
        metrics["auprc"] or float("nan"),
        metrics["brier"],
        n_test,
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
