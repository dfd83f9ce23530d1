"""Job survival: time to the cohort's outcome with censoring: a ridge-penalised Cox model
(default, ``model: cox``) or MLlib's Weibull AFTSurvivalRegression (``model: aft``).

Joins gold.features_<cohort> to gold.cohort_<cohort> (time_days, event: the outcome within the
horizon, else censored at death, end of data or the horizon), splits patients by the same seeded
hash of person_key as train, fits the shared preprocessing (imputation, one-hot, standardisation)
and the model on the training split: Cox by Newton-Raphson on the partial likelihood
(``causal.cox``, Efron ties, penalised as lifelines' ``CoxPHFitter(penalizer=, l1_ratio=0)``;
slots constant in the training split are left out with coefficient 0) with the Breslow baseline
hazard, or the AFT. Measures Harrell's concordance index on the held-out split (and on the
training split, to show over-fitting) and calibration at a horizon: the held-out predicted risk
by then against the Kaplan-Meier observed risk by risk decile. Risk groups are tertiles of the
training split's risk score; Kaplan-Meier curves of the held-out split by risk group and the
calibration plot go to MLflow as PNGs, the coefficients and the calibration table as JSON. Writes
``gold.survival_<cohort>`` (person_key, index_date, split, risk_score, predicted_risk,
horizon_days, log_predicted_time (AFT), predicted_median_days, risk_group, time_days, event,
model name/version, input_version, run_id) and registers the model (alias from config).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import ConfigError, InputError
from omicslake.frames import canonical
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="survival",
    description="Fit a censored time-to-event model (penalised Cox, or MLlib AFT) on gold.features_<cohort>; "
    "held-out C-index and calibration at a horizon -> gold.survival_<cohort>.",
    after=("build_cohort",),
    config=("jobs.survival", "mlflow"),
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def model_name(cohort: str, registered: str | None = None, model: str = "cox") -> str:
    return registered or f"omicslake_{cohort}_{model}"


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    import mlflow

    from omicslake.ml import model as M
    from omicslake.ml import survival as S
    from omicslake.ml.plots import km_plot, survival_calibration_plot
    from omicslake.ml.tracking import log_files, log_model, register, setup, tracked_run

    c = cfg.jobs.survival
    table, cohort_table = f"gold.features_{c.cohort}", f"gold.cohort_{c.cohort}"
    for t in (table, cohort_table):
        if not lake.exists(t):
            raise InputError(f"{t} does not exist: run build_cohort (cohort {c.cohort}) first")
    if c.penalizer < 0 or c.calibration_groups < 2 or (c.horizon_days is not None and c.horizon_days <= 0):
        raise ConfigError(
            f"jobs.survival: penalizer must be >= 0 (is {c.penalizer}), calibration_groups >= 2 (is "
            f"{c.calibration_groups}) and horizon_days > 0 or unset (is {c.horizon_days})"
        )
    version = lake.version(table)
    feats = lake.read(table, version=version)
    outcome = lake.read(cohort_table).select("person_key", "time_days", "event")
    bad = outcome.where(F.col("time_days").isNull() | F.col("event").isNull() | (F.col("time_days") < 0)).count()
    if bad:
        raise InputError(
            f"{cohort_table}: {bad} persons without a usable time_days/event (null or negative); rebuild the cohort"
        )
    # AFT needs time > 0: an exit on the index day (e.g. death) counts as half a day (Cox: the order is kept)
    data = (
        canonical(feats.drop("time_days", "event").join(outcome, "person_key"), ["person_key"])  # same rows, same fit
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
        r["split"]: (int(r["n"]), int(r["events"] or 0), r["longest"])
        for r in data.groupBy("split")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("event").alias("events"), F.max("time").alias("longest"))
        .collect()
    }
    n_train, ev_train, longest = counts.get("train", (0, 0, None))
    n_test, ev_test, _ = counts.get("test", (0, 0, None))
    if ev_train == 0 or n_test == 0:
        raise InputError(
            f"{table}: {n_train} training persons with {ev_train} events and {n_test} held out; the model needs events and a test split"
        )
    horizon = float(c.horizon_days or longest)
    params: dict[str, Any]
    if c.model == "cox":
        fitted, fit_info = _fit_cox(train, cols, c.penalizer, c.ties, horizon)
        pred = fitted.transform(data).withColumn("risk_score", F.col("lp"))
        pred = pred.withColumn("log_predicted_time", F.lit(None).cast("double"))
        weights = fit_info["coefficients"]
        params = {"model": "cox_ridge", "penalizer": c.penalizer, "ties": c.ties}
        extra = {"converged": float(fit_info["converged"]), "iterations": float(fit_info["iterations"])}
        coef_json: dict[str, Any] = {
            "coefficients": weights,
            "baseline_cumulative_hazard": {"t": fit_info["times"], "h": fit_info["cumhaz"]},
            "dropped_constant": fit_info["dropped"],
        }
        label = "Cox"
    else:
        fitted = S.pipeline(cols).fit(train)
        aft = fitted.stages[-1]
        pred = (
            fitted.transform(data)
            .withColumn("log_predicted_time", S.linear_predictor())
            .withColumn("risk_score", -F.col("log_predicted_time"))
            .withColumn("predicted_median_days", vector_to_array("quantiles").getItem(0))
            .withColumn("predicted_risk", S.aft_risk(horizon, float(aft.scale)))
        )
        weights = M.importances(fitted)
        params = {"model": "aft_weibull"}
        extra = {"scale": float(aft.scale), "intercept": float(aft.intercept)}
        coef_json = {"intercept": float(aft.intercept), "scale": float(aft.scale), "coefficients": weights}
        label = "AFT"
    # higher score = longer survival for the concordance index and the tertiles (as AFT's log time)
    pred = pred.withColumn("survival_score", -F.col("risk_score")).cache()
    pred = pred.withColumn(
        "risk_group", S.risk_group(S.risk_cuts(pred.where("split = 'train'"), "survival_score"), "survival_score")
    )
    test = pred.where("split = 'test'")
    c_test, pairs_test = S.concordance(test, score="survival_score")
    c_train, _ = S.concordance(pred.where("split = 'train'"), score="survival_score")
    km = S.kaplan_meier(test, "risk_group")
    cal = S.calibration(test, horizon, groups=c.calibration_groups)
    observed, observed_se = S.km_at(S.kaplan_meier(test.withColumn("_all", F.lit("all")), "_all")["all"], horizon)
    mean_pred = float(sum(g["predicted"] * g["n"] for g in cal) / max(sum(g["n"] for g in cal), 1))
    cal_metrics = {
        "test_calibration_predicted": mean_pred,
        "test_calibration_observed": 1.0 - observed,
        "test_calibration_max_abs_diff": max((abs(g["predicted"] - g["observed"]) for g in cal), default=float("nan")),
        "horizon_days": horizon,
    }
    name = model_name(c.cohort, c.registered_model, c.model)
    experiment = setup(cfg)
    run_name = f"{c.cohort}-{c.model}-{lake.run_id}"
    with tracked_run(experiment, run_name, lake.run_id, NAME, cohort=c.cohort, table=table) as r:
        mlflow.log_params(
            {
                **params,
                "cohort": c.cohort,
                "table": table,
                "table_version": version,
                "seed": c.seed,
                "test_fraction": c.test_fraction,
                "n_features": len(cols.all),
                "n_empty_features_dropped": len(empty),
                "exclude": json.dumps(list(c.exclude)),
                "horizon_days": horizon,
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
                **extra,
                **cal_metrics,
            }
        )
        title = f"{c.cohort} {label} (held-out, n={n_test:,})"
        log_files(
            plots=lambda folder: [
                km_plot(km, c_test, folder, title),
                survival_calibration_plot(cal, horizon, folder, title),
            ],
            metrics={
                "coefficients.json": coef_json,
                "survival_calibration.json": {"horizon_days": horizon, "groups": cal},
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
        "risk_score",
        "predicted_risk",
        F.lit(horizon).alias("horizon_days"),
        "log_predicted_time",
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
        "%s: %s on %d persons (%d events); held-out C-index %.3f (n=%d, %d events), training %.3f; "
        "risk by day %g predicted %.3f, observed %.3f",
        table,
        label,
        n_train,
        ev_train,
        c_test or float("nan"),
        n_test,
        ev_test,
        c_train or float("nan"),
        horizon,
        mean_pred,
        1.0 - observed,
    )
    return {
        "model": c.model,
        "test_c_index": None if c_test is None else round(c_test, 4),
        "train_c_index": None if c_train is None else round(c_train, 4),
        "n_train": n_train,
        "n_test": n_test,
        "events_train": ev_train,
        "events_test": ev_test,
        **{k: round(v, 4) for k, v in extra.items()},
        "horizon_days": horizon,
        "calibration_predicted": round(mean_pred, 4),
        "calibration_observed": round(1.0 - observed, 4),
        "calibration_observed_se": round(observed_se, 4),
        "calibration_max_abs_diff": round(cal_metrics["test_calibration_max_abs_diff"], 4),
        "persons": w.rows,
        "table_version": version,
        "registered_model": name,
        "model_version": int(mv.version),
        "mlflow_run_id": run_id,
        "model_uri": info.model_uri,
    }


def _fit_cox(
    train: DataFrame, cols: Any, penalizer: float, ties: str, horizon: float
) -> tuple[PipelineModel, dict[str, Any]]:
    """The shared preprocessing fitted on the training split, then ``causal.cox.fit`` on its vector's
    slots (a slot constant in the training split gets coefficient 0: the penalty on standardised
    slots cannot hold it) and the Breslow baseline; returns (PipelineModel ending in CoxPredictor,
    coefficients by slot name, baseline, convergence)."""
    from omicslake.causal import cox
    from omicslake.ml import model as M
    from omicslake.ml import survival as S

    prep = Pipeline(stages=M.preprocessing(cols)).fit(train)
    x = prep.transform(train).withColumn("_xa", vector_to_array("features"))
    first = x.select(F.size("_xa").alias("p")).first()
    assert first is not None
    p = int(first["p"])
    slots = x.select("time", "event", *[F.col("_xa")[j].alias(f"x{j}") for j in range(p)])
    sds = slots.agg(*[F.stddev_samp(f"x{j}").alias(f"x{j}") for j in range(p)]).first()
    assert sds is not None
    keep = [j for j in range(p) if (sds[f"x{j}"] or 0.0) > 1e-12]
    names = M.slot_names(prep, p)
    res = cox.fit(slots, "time", "event", [f"x{j}" for j in keep], ties=ties, penalizer=penalizer)
    for msg in res.diagnostics:
        log.warning("survival Cox: %s", msg)
    if not np.all(np.isfinite(res.coef)):
        raise InputError(f"survival Cox: the fit gave non-finite coefficients ({res.diagnostics}); raise penalizer")
    beta = np.zeros(p)
    beta[keep] = res.coef
    scored = PipelineModel(stages=[*prep.stages, S.CoxPredictor(coefficients=beta.tolist(), horizon=horizon)])
    t, h = S.breslow(scored.transform(train))
    predictor = S.CoxPredictor(coefficients=beta.tolist(), times=t.tolist(), cumhaz=h.tolist(), horizon=horizon)
    coefficients = sorted(((names[j], float(beta[j])) for j in range(p)), key=lambda kv: -abs(kv[1]))
    return PipelineModel(stages=[*prep.stages, predictor]), {
        "coefficients": coefficients,
        "times": t.tolist(),
        "cumhaz": h.tolist(),
        "dropped": [names[j] for j in range(p) if j not in keep],
        "converged": res.converged,
        "iterations": res.iterations,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
