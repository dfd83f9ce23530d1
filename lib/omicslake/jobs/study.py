"""Job study: the comparative effect studies of conf/studies/*.yaml on the lake.

For each study (``jobs.study.studies``, or every file of ``conf/studies/``): the population from the
cohort (``gold.cohort_<cohort>``, covariates from ``gold.features_<cohort>``), the first exposure to
the target or comparator drug in ``silver.drug_exposure`` and the outcomes in
``silver.condition_occurrence`` (``causal.population``), then ``causal.study.run_study`` (propensity
scores, IPTW / matching / stratification, balance, Cox per outcome and negative control, incidence,
effect modification, empirical calibration, Kaplan-Meier). Writes, per study ``<name>``:

- ``gold.study_<name>_estimates``: outcome, analysis, HR, CI, p, calibrated p / CI
- ``gold.study_<name>_balance``: covariate SMD before / after per analysis
- ``gold.study_<name>_ps``: person pseudonym, arm, PS, preference, IPTW weight, matched set, PS stratum
- ``gold.study_<name>_incidence``: rate per 1,000 person-years with exact CIs per arm (and breakdowns)
- ``gold.study_<name>_km``: Kaplan-Meier by arm per outcome (thinned to ``jobs.study.km_points``)
- ``gold.study_<name>_modification``: interaction and stratum HRs per modifier
- ``gold.study_<name>_attrition``: persons left after each step of the population
- ``gold.study_<name>_mediation``: natural direct / indirect effects and the proportion mediated
  (only for a study with ``design.mediation``; its post-index measurements from ``silver.measurement``)

and one MLflow run per study (tagged ``omicslake.study``) with the design as parameters, the HRs and
balance as metrics and the tables' rows as JSON. Orchestration only: the science is in ``causal``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="study",
    description="Comparative effect studies of conf/studies/*.yaml (PS, IPTW, matching, Cox, calibration) -> gold.study_<name>_*, MLflow.",
    after=("build_cohort",),
    config=("jobs.study", "jobs.build_cohort.end_of_data", "mlflow"),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
# gold.study_<name>_<table>
TABLES = ("estimates", "balance", "ps", "incidence", "km", "modification", "attrition", "mediation")


def _end_of_data(cfg: Config, drugs: DataFrame, conditions: DataFrame) -> Any:
    """The censoring date for everyone: configured, else the latest drug or condition date in silver."""
    configured = cfg.jobs.study.end_of_data or cfg.jobs.build_cohort.end_of_data
    if configured:
        return F.to_date(F.lit(configured))
    d = drugs.agg(
        F.max(F.greatest(F.to_date("drug_exposure_start_datetime"), F.to_date("drug_exposure_end_datetime")))
    ).first()
    c = conditions.agg(F.max("condition_start_date")).first()
    dates = [x[0] for x in (d, c) if x is not None and x[0] is not None]
    if not dates:
        raise InputError("silver.drug_exposure and silver.condition_occurrence are empty: no study can run")
    return F.lit(max(dates))


def _frame(spark: SparkSession, rows: list[dict[str, Any]], table: str, run_id: str) -> DataFrame:
    """Rows (dicts) as a DataFrame with the contract's schema of ``table`` (run_id added)."""
    from omicslake.contracts import load_contract

    schema = load_contract(table).struct()
    names = schema.fieldNames()
    clean = []
    for r in rows:
        r = {**r, "run_id": run_id}
        clean.append(tuple(_plain(r.get(n)) for n in names))
    return spark.createDataFrame(clean, schema)


def _plain(v: Any) -> Any:
    """numpy scalars to Python, NaN to None (a contract's double column holds null, not NaN)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _thin(km: list[dict[str, Any]], points: int) -> list[dict[str, Any]]:
    """At most ``points`` steps per (outcome, arm), evenly spread over the steps, keeping the last."""
    out: list[dict[str, Any]] = []
    keys = sorted({(r["outcome"], r["arm"]) for r in km})
    for k in keys:
        steps = [r for r in km if (r["outcome"], r["arm"]) == k]
        if len(steps) > points > 1:
            idx = sorted({round(i * (len(steps) - 1) / (points - 1)) for i in range(points)})
            steps = [steps[i] for i in idx]
        out += steps
    return out


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.causal.population import load_study, population, study_names, study_path
    from omicslake.causal.study import StudyError, run_study

    c = cfg.jobs.study
    names = list(c.studies) or study_names()
    specs = [load_study(n) for n in names]  # config errors before any work
    for n in names:
        lake.use_file(str(study_path(n)))
    for t in ("silver.person", "silver.drug_exposure", "silver.condition_occurrence"):
        if not lake.exists(t):
            raise InputError(f"{t} does not exist: run conform_ehr first")
    drugs, conditions = lake.read("silver.drug_exposure"), lake.read("silver.condition_occurrence")
    persons = lake.read("silver.person")
    end = _end_of_data(cfg, drugs, conditions)
    metrics: dict[str, Any] = {}
    # every study's tables and MLflow runs land together: a failure anywhere (a write, MLflow, the next
    # study) puts each table back to its version before this run, so the lake keeps its previous versions
    with lake.undo_on_error([f"gold.study_{s.name}_{k}" for s in specs for k in TABLES]):
        for spec in specs:
            cohort_t, feats_t = f"gold.cohort_{spec.cohort}", f"gold.features_{spec.cohort}"
            for t in (cohort_t, feats_t):
                if not lake.exists(t):
                    raise InputError(
                        f"study {spec.name}: {t} does not exist; add cohort {spec.cohort!r} to jobs.build_cohort.cohorts "
                        f"and run build_cohort, or name another cohort in {spec.source}"
                    )
            meas = None
            if spec.measurements:
                if not lake.exists("silver.measurement"):
                    raise InputError(
                        f"study {spec.name}: its measurements need silver.measurement; run conform_ehr first"
                    )
                meas = lake.read("silver.measurement")
            pop, steps = population(
                lake.read(cohort_t), lake.read(feats_t), drugs, conditions, persons, spec, end, measurements=meas
            )
            pop = pop.cache()
            n = steps[-1]["persons"]
            if n == 0:
                msg = (
                    f"study {spec.name}: no person of cohort {spec.cohort} has a first exposure to {spec.target.name} "
                    f"{list(spec.target.codes)} or {spec.comparator.name} {list(spec.comparator.codes)} with every "
                    f"covariate known (attrition {[(s['step'], s['persons']) for s in steps]}); point the study at drugs "
                    "the lake holds (generated lakes: jobs.generate.exposure_share > 0)"
                )
                if c.on_empty == "fail":
                    raise StudyError(msg)
                log.warning("%s; skipped (jobs.study.on_empty=skip)", msg)
                metrics[spec.name] = {"skipped": msg, "attrition": steps}
                pop.unpersist()
                continue
            try:
                res = run_study(pop, spec.design)
            except StudyError as exc:
                raise StudyError(f"study {spec.name} ({spec.source}): {exc}") from exc
            metrics[spec.name] = _write(spark, cfg, lake, spec, res, steps)
            if res.persons is not None:
                res.persons.unpersist()
            pop.unpersist()
    return metrics


def _write(
    spark: SparkSession, cfg: Config, lake: Lake, spec: Any, res: Any, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """The gold tables and the MLflow run of one study; returns its metrics."""
    import mlflow

    from omicslake.ml.tracking import log_files, setup, tracked_run

    d = spec.design
    prefix = f"gold.study_{spec.name}_"
    null = {a: v for a, v in res.calibration.items()}
    estimates = [
        {
            **e,
            "null_mean": null.get(e["analysis"], {}).get("null_mean"),
            "null_sd": null.get(e["analysis"], {}).get("null_sd"),
        }
        for e in res.estimates
    ]
    arm = F.when(F.col("target") == 1, spec.target.name).otherwise(spec.comparator.name)
    assert res.persons is not None
    ps = res.persons.withColumn("arm", arm).withColumn("run_id", F.lit(lake.run_id))
    frames = {
        "estimates": _frame(spark, estimates, prefix + "estimates", lake.run_id),
        "balance": _frame(spark, res.balance, prefix + "balance", lake.run_id),
        "ps": ps,
        "incidence": _frame(spark, res.incidence, prefix + "incidence", lake.run_id),
        "km": _frame(spark, _thin(res.km, cfg.jobs.study.km_points), prefix + "km", lake.run_id),
        "modification": _frame(spark, res.modification, prefix + "modification", lake.run_id),
        "attrition": _frame(
            spark, [{"step_no": i + 1, **s} for i, s in enumerate(steps)], prefix + "attrition", lake.run_id
        ),
    }
    if res.mediation:
        frames["mediation"] = _frame(spark, res.mediation, prefix + "mediation", lake.run_id)
    versions = {t: lake.write(df, prefix + t, mode="overwrite", merge_schema=True).version for t, df in frames.items()}
    main = {(e["outcome"], e["analysis"]): e for e in res.estimates if not e["negative_control"]}
    max_smd = {
        a: max(
            (abs(b["smd_after"]) for b in res.balance if b["analysis"] == a and b["smd_after"] is not None), default=0.0
        )
        for a in {b["analysis"] for b in res.balance}
    }
    max_before = max((abs(b["smd_before"]) for b in res.balance if b["smd_before"] is not None), default=0.0)
    out: dict[str, Any] = {
        "persons": res.counts.get("target", 0) + res.counts.get("comparator", 0),
        "counts": res.counts,
        "hr": {
            f"{o}/{a}": [round(e["hr"], 4), round(e["hr_lower"], 4), round(e["hr_upper"], 4)]
            for (o, a), e in main.items()
        },
        "max_abs_smd_before": round(max_before, 4),
        "max_abs_smd_after": {a: round(v, 4) for a, v in max_smd.items()},
        "diagnostics": res.diagnostics,
        "versions": versions,
    }
    if res.mediation:
        out["mediation"] = {
            r["effect"]: [round(r[k], 4) if r[k] is not None else None for k in ("estimate", "lower", "upper")]
            for r in res.mediation
        }
    experiment = setup(cfg)
    with tracked_run(
        experiment, f"study-{spec.name}-{lake.run_id}", lake.run_id, NAME, study=spec.name, cohort=spec.cohort
    ) as r:
        mlflow.log_params(
            {
                "study": spec.name,
                "cohort": spec.cohort,
                "target": f"{spec.target.name} {list(spec.target.codes)}",
                "comparator": f"{spec.comparator.name} {list(spec.comparator.codes)}",
                "covariates": json.dumps(dict(spec.covariates)),
                "analyses": ",".join(d.analyses),
                "outcomes": ",".join(d.outcomes),
                "negative_controls": ",".join(d.negative_controls),
                "estimand": d.estimand,
                "caliper": d.caliper,
                "ratio": d.ratio,
                "strata": d.strata,
                "ties": d.ties,
                "ps_reg": d.ps_reg,
            }
        )
        m = {f"n_{k}": float(v) for k, v in res.counts.items()}
        m["max_abs_smd_before"] = max_before
        for a, v in max_smd.items():
            m[f"max_abs_smd_after_{a}"] = v
        for (o, a), e in main.items():
            m[f"hr_{o}_{a}"] = e["hr"]
            m[f"hr_lower_{o}_{a}"] = e["hr_lower"]
            m[f"hr_upper_{o}_{a}"] = e["hr_upper"]
        for row in res.mediation:  # not ``r``: that is the MLflow run, whose id is returned below
            for k in ("estimate", "lower", "upper"):
                m[f"mediation_{row['effect']}" + ("" if k == "estimate" else f"_{k}")] = row[k]
        if d.mediation is not None:
            mlflow.log_params(
                {
                    "mediation": json.dumps(
                        {k: v for k, v in d.mediation.__dict__.items() if k != "covariates"}
                        | {"covariates": list(d.mediation.covariates or d.covariates)}
                    )
                }
            )
        mlflow.log_metrics({k: float(v) for k, v in m.items() if v is not None and not math.isnan(float(v))})
        log_files(
            metrics={
                "estimates.json": [{k: _plain(v) for k, v in e.items()} for e in estimates],
                "balance.json": res.balance,
                "calibration.json": res.calibration,
                "ps_coefficients.json": res.ps_coefficients,
                "attrition.json": steps,
                **({"mediation.json": res.mediation} if res.mediation else {}),
            }
        )
        out["mlflow_run_id"] = r.info.run_id
    for (o, a), e in sorted(main.items()):
        log.info("study %s: %s %s HR %.3f (%.3f-%.3f)", spec.name, o, a, e["hr"], e["hr_lower"], e["hr_upper"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
