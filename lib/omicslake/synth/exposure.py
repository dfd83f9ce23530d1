"""Planted truth for comparative effect studies: a treatment with confounding by indication and
outcomes with known hazard ratios (its own random streams, ``exposure:*``, so nothing else the
generator writes changes).

On the people of ``people.patients_base``:

- treatment (new drug vs comparator drug, both started at the index date) with
  ``logit P(treated) = TREATMENT["intercept"] + age/BMI/HbA1c terms`` (confounding by indication:
  older, heavier, less controlled patients get the new drug more often);
- the outcome of interest with hazard ``BASE_HAZARD * exp(risk(age, BMI, HbA1c) + log(HR) * treated)``
  (the same confounders raise the risk, so the crude HR is biased upwards);
- a modified outcome whose HR is 1 in men and ``MODIFIED_HR_FEMALE`` in women (effect modifier: sex);
- negative-control outcomes with the same confounding and HR 1;
- censoring uniform over 1-5 years after index (end of the exposure: the drug's stop date), or at
  death when that comes first;
- a mediator, LDL cholesterol measured ``MEDIATOR["day"]`` days after the index (``ldl_90d``, mg/dL):
  ``MEDIATOR["intercept"] + MEDIATOR["treated"] * treated + age/BMI/HbA1c terms + N(0, MEDIATOR["sd"])``
  (the new drug lowers it), and a mediated outcome (``mediated``: acute coronary syndrome within
  ``MEDIATED["window"]`` days of the index, after the measurement) with
  ``logit P = MEDIATED["intercept"] + MEDIATED["treated"] * treated + MEDIATED["ldl_per_10"] * (ldl - 130) / 10
  + age/BMI/HbA1c terms``: part of the drug's effect runs through LDL. Its truth is exact per person
  (``mediated_y<t><m>`` = E[Y(t, M(m)) | covariates], the mediator integrated out by Gauss-Hermite
  quadrature) and averaged over the population in the manifest (``mediation_truth``: natural direct
  and indirect effects, total, proportion mediated).

With ``jobs.generate.exposure_share`` > 0 that share of the patients (its own stream) also has the
exposure in the EHR files (``ehr_medications`` / ``ehr_conditions``): the drug ordered at the index
wellness visit, stopped at the end of follow-up, each outcome that happened as a condition on its
date (recorded against the prescribing encounter), and the mediator as an observation (LOINC 13457-7,
LDL by calculation) ``MEDIATOR["day"]`` days after the index. ``in_ehr`` in truth/exposure.csv says who.

Times are exponential by inverse transform of counter-based uniforms (``synth.rand``), so they
depend on (seed, patient) only.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.synth.rand import normal, uniform, uuid_from

STREAM = "exposure"
TREATMENT = {"intercept": -0.4, "age_per_10y": 0.5, "bmi_per_5": 0.5, "hba1c_per_pct": 1.0}
RISK = {"age_per_10y": 0.45, "bmi_per_5": 0.35, "hba1c_per_pct": 0.6}
BASE_HAZARD_PER_DAY = 0.12 / 365.25
TRUE_HR = 0.6
MODIFIED_HR_FEMALE = 0.5
NEGATIVE_CONTROLS = ("nc_1", "nc_2", "nc_3", "nc_4", "nc_5")
NC_BASE_HAZARD_PER_DAY = 0.08 / 365.25
FOLLOW_UP_DAYS = (365, 5 * 365)
# the mediator (LDL mg/dL at MEDIATOR["day"] after index) and the mediated outcome (within MEDIATED["window"]
# days of the index, after the measurement); covariate terms per (age - 55) / 10, (BMI - 28) / 5, HbA1c - 5.6
# (age not capped: a model linear in the study's covariates is then exact)
MEDIATOR = {
    "day": 90,
    "intercept": 130.0,
    "treated": -40.0,
    "age_per_10y": 6.0,
    "bmi_per_5": 5.0,
    "hba1c_per_pct": 4.0,
    "sd": 20.0,
}
MEDIATED = {
    "window": 365,
    "intercept": -2.0,
    "treated": math.log(0.6),
    "ldl_per_10": 0.2,
    "age_per_10y": 0.3,
    "bmi_per_5": 0.2,
    "hba1c_per_pct": 0.3,
}
MEDIATOR_COLUMN = "ldl_90d"
MEDIATION_TRUTH = ("mediated_y00", "mediated_y01", "mediated_y10", "mediated_y11")  # E[Y(t, M(m))], "y<t><m>"
MEDIATOR_OBSERVATION = "ldl_calc"  # key of synth.codes.OBSERVATIONS
GH_POINTS = 40  # Gauss-Hermite nodes of the exact truth (the integrand is smooth: exact to ~1e-16)
DRUGS = {"target": "new_drug", "comparator": "old_drug"}  # keys of synth.codes.MEDICATIONS
# outcome -> key of synth.codes.CONDITIONS: the condition the EHR files record for it
OUTCOME_CONDITIONS = {
    "outcome": "stroke",
    "modified": "dvt",
    "nc_1": "ankle_fracture",
    "nc_2": "atopic_dermatitis",
    "nc_3": "impacted_molars",
    "nc_4": "viral_pharyngitis",
    "nc_5": "meniscus_tear",
    "mediated": "acs",
}


def _z(c: str, centre: float, per: float) -> Column:
    return (F.least(F.col(c), F.lit(90.0)) - centre) / per if c == "age" else (F.col(c) - centre) / per


def _confounders(coef: dict[str, float]) -> Column:
    return (
        coef["age_per_10y"] * _z("age", 55, 10)
        + coef["bmi_per_5"] * _z("bmi", 28, 5)
        + coef["hba1c_per_pct"] * _z("hba1c", 5.6, 1)
    )


def _linear(coef: dict[str, float]) -> Column:
    """The mediator's and mediated outcome's covariate terms (age uncapped)."""
    return (
        coef["age_per_10y"] * (F.col("age") - 55) / 10
        + coef["bmi_per_5"] * (F.col("bmi") - 28) / 5
        + coef["hba1c_per_pct"] * (F.col("hba1c") - 5.6)
    )


def _mediated_logit(t: Column | float, ldl: Column) -> Column:
    c = MEDIATED
    return F.lit(c["intercept"]) + F.lit(c["treated"]) * t + F.lit(c["ldl_per_10"]) * (ldl - 130) / 10 + _linear(c)


def _mediator_mean(t: Column | float) -> Column:
    return F.lit(MEDIATOR["intercept"]) + F.lit(MEDIATOR["treated"]) * t + _linear(MEDIATOR)


def expected_outcome(eta: Any) -> Any:
    """E[expit(eta + b * e)], e ~ N(0, MEDIATOR["sd"]), b = MEDIATED["ldl_per_10"] / 10, per element of
    ``eta`` (numpy): the mediated outcome's probability for a person whose logit at the mean of the
    mediator is ``eta``, the mediator's own noise integrated out by ``GH_POINTS``-point Gauss-Hermite
    quadrature. With eta = the logit under treatment t at the mediator's mean under treatment m, this
    is E[Y(t, M(m)) | covariates]."""
    import numpy as np

    z, w = np.polynomial.hermite.hermgauss(GH_POINTS)
    d = math.sqrt(2.0) * MEDIATOR["sd"] * z * MEDIATED["ldl_per_10"] / 10
    x = np.asarray(eta, dtype=float)[..., None] + d
    return (0.5 * (1 + np.tanh(0.5 * x))) @ (w / math.sqrt(math.pi))


def _truth_columns(df: DataFrame) -> DataFrame:
    """``df`` with the ``MEDIATION_TRUTH`` columns: each ``expected_outcome`` of the logit under t at
    the mediator's mean under m (the same formulas as the simulation, as Spark columns), in a
    pandas UDF."""

    @F.pandas_udf("double")  # type: ignore[call-overload]
    def integrate(eta: pd.Series) -> pd.Series:
        return pd.Series(expected_outcome(eta.to_numpy(float)))

    etas = {c: _mediated_logit(float(c[-2]), _mediator_mean(float(c[-1]))) for c in MEDIATION_TRUTH}
    return df.select("*", *[integrate(eta).alias(c) for c, eta in etas.items()])


def _rate(name: str, t: Column) -> Column:
    """The daily hazard of outcome ``name`` of a person under treatment ``t`` (0/1)."""
    risk = _confounders(RISK)
    if name == "outcome":
        return F.lit(BASE_HAZARD_PER_DAY) * F.exp(risk + F.lit(math.log(TRUE_HR)) * t)
    if name == "modified":
        female = (F.col("sex") == "F").cast("int")
        return F.lit(BASE_HAZARD_PER_DAY) * F.exp(risk + F.lit(math.log(MODIFIED_HR_FEMALE)) * t * female)
    return F.lit(NC_BASE_HAZARD_PER_DAY) * F.exp(risk)  # a negative control: the drug changes nothing


def _observed(tt: Column) -> tuple[Column, Column]:
    """(days, event) of an event time ``tt`` under the person's follow-up: whole days >= 1 to the event,
    or to the end of follow-up without it."""
    event = tt <= F.col("follow_up_days")
    days = F.when(event, F.greatest(F.ceil(tt), F.lit(1))).otherwise(F.col("follow_up_days"))
    return days.cast("int"), event.cast("int")


def _time(seed: int, name: str, rate: Column) -> Column:
    u = F.greatest(uniform(seed, f"{STREAM}:{name}", "idx"), F.lit(1e-300))
    return -F.log(u) / rate


def simulate(people: DataFrame, seed: int, share: float = 0.0) -> DataFrame:
    """people (idx, patient_id, sex, age, bmi, hba1c, index_date, optionally death_date:
    ``people.patients_base``) -> one row per person: idx, patient_id, index_date, treated (1 new drug
    / 0 comparator), drug, sex, age, bmi, hba1c, follow_up_days (censored at death), in_ehr (1 for
    the ``share`` of patients whose exposure the EHR files hold), and for each outcome o in (outcome,
    modified, nc_1..nc_5, mediated): ``o_days`` (days to the outcome or to censoring, whole days >= 1)
    and ``o_event`` (0/1); the mediator ``ldl_90d`` and the exact ``mediated_y<t><m>`` (module docstring)."""
    s = seed
    logit = F.lit(TREATMENT["intercept"]) + _confounders(TREATMENT)
    p_treat = 1 / (1 + F.exp(-logit))
    treated = (uniform(s, f"{STREAM}:treat", "idx") < p_treat).cast("int")
    lo, hi = FOLLOW_UP_DAYS
    df = people.withColumn("treated", treated)
    df = df.withColumn("drug", F.when(F.col("treated") == 1, DRUGS["target"]).otherwise(DRUGS["comparator"]))
    follow_up = F.floor(F.lit(lo) + uniform(s, f"{STREAM}:censor", "idx") * (hi - lo)).cast("int")
    if "death_date" in people.columns:  # death ends follow-up (every death is >= 900 days after index)
        died = F.datediff(F.col("death_date"), F.col("index_date"))
        follow_up = F.least(follow_up, F.coalesce(died, follow_up))
    df = df.withColumn("follow_up_days", follow_up.cast("int"))
    df = df.withColumn("in_ehr", (uniform(s, f"{STREAM}:share", "idx") < F.lit(float(share))).cast("int"))
    t = F.col("treated")
    for name in ("outcome", "modified", *NEGATIVE_CONTROLS):
        days, event = _observed(_time(s, name, _rate(name, t)))
        df = df.withColumn(f"{name}_event", event).withColumn(f"{name}_days", days)
    # the mediator and the mediated outcome (streams exposure:mediator*: nothing above changes)
    ldl = _mediator_mean(t) + normal(s, f"{STREAM}:mediator", "idx", sd=MEDIATOR["sd"])
    df = df.withColumn("_ldl", ldl).withColumn(MEDIATOR_COLUMN, F.round(F.col("_ldl"), 1))
    p_y = 1 / (1 + F.exp(-_mediated_logit(t, F.col("_ldl"))))
    hit = uniform(s, f"{STREAM}:mediated", "idx") < p_y
    lo_day, window = MEDIATOR["day"] + 1, MEDIATED["window"]
    day = F.floor(F.lit(lo_day) + uniform(s, f"{STREAM}:mediated_day", "idx") * (window - lo_day + 1)).cast("int")
    df = df.withColumn("mediated_event", hit.cast("int")).withColumn(
        "mediated_days", F.when(hit, day).otherwise(F.col("follow_up_days")).cast("int")
    )
    keep = [
        "idx",
        "patient_id",
        "index_date",
        "sex",
        "age",
        "bmi",
        "hba1c",
        "treated",
        "drug",
        "follow_up_days",
        "in_ehr",
    ]
    out = df.select(*keep, *[c for o in outcomes() for c in (f"{o}_event", f"{o}_days")], MEDIATOR_COLUMN)
    return _truth_columns(out)


def columns() -> list[str]:
    """The columns of truth/exposure.csv, in order (the mediator's appended after the outcomes:
    ``ldl_90d`` and ``mediated_y<t><m>`` = E[Y(t, M(m))] per person)."""
    cols = ["patient_id", "index_date", "treated", "drug", "follow_up_days", "in_ehr"]
    for o in outcomes():
        cols += [f"{o}_days", f"{o}_event"]
    return [*cols, MEDIATOR_COLUMN, *MEDIATION_TRUTH]


def mediation_truth(sim: DataFrame, where: Column | None = None) -> dict[str, float]:
    """The planted natural effects of the treatment on the mediated outcome (risk difference within
    ``MEDIATED["window"]`` days) over the persons of ``sim`` (``simulate``'s rows; ``where``: those
    of them it holds): with Q(t, m) = mean E[Y(t, M(m))], NIE (ACME) = mean over t of Q(t, 1) -
    Q(t, 0), NDE (ADE) = mean over m of Q(1, m) - Q(0, m), total = Q(1, 1) - Q(0, 0), proportion
    mediated = NIE / total (as statsmodels' Mediation and causal.mediation define them); persons too."""
    return mediation_truths(sim, {"all": where if where is not None else F.lit(True)})["all"]


def mediation_truths(sim: DataFrame, subsets: dict[str, Column]) -> dict[str, dict[str, float] | None]:
    """``mediation_truth`` of several subsets of ``sim`` (name -> condition) in one aggregation;
    None for a subset without persons."""
    aggs = []
    for k, cond in subsets.items():
        aggs.append(F.count(F.when(cond, 1)).alias(f"{k}__n"))
        aggs += [F.avg(F.when(cond, F.col(c))).alias(f"{k}__{c}") for c in MEDIATION_TRUTH]
    row = sim.agg(*aggs).first()
    assert row is not None
    out: dict[str, dict[str, float] | None] = {}
    for k in subsets:
        if not row[f"{k}__n"]:
            out[k] = None
            continue
        q = {(int(c[-2]), int(c[-1])): float(row[f"{k}__{c}"]) for c in MEDIATION_TRUTH}
        nie = ((q[0, 1] - q[0, 0]) + (q[1, 1] - q[1, 0])) / 2
        nde = ((q[1, 0] - q[0, 0]) + (q[1, 1] - q[0, 1])) / 2
        total = q[1, 1] - q[0, 0]
        out[k] = {
            "nie": nie,
            "nde": nde,
            "total": total,
            "prop_mediated": nie / total,
            "risk_untreated": q[0, 0],
            "risk_treated": q[1, 1],
            "persons": int(row[f"{k}__n"]),
        }
    return out


def potential_outcomes(sim: DataFrame, seed: int, name: str) -> DataFrame:
    """Both potential outcomes of every person of ``sim`` (``simulate``'s rows, the same ``seed``) for
    ``name`` ('outcome' or 'modified'): rows (idx, arm, days, event), arm 0 without and 1 with the drug,
    from the same uniform and follow-up the simulation draws from (a person's row of their own arm is
    their simulated outcome)."""
    arms = []
    for arm in (0, 1):
        days, event = _observed(_time(seed, name, _rate(name, F.lit(arm))))
        arms.append(sim.select("idx", F.lit(arm).alias("arm"), days.alias("days"), event.alias("event")))
    return arms[0].unionByName(arms[1])


def marginal_hrs(sim: DataFrame, seed: int, where: Column | None = None) -> dict[str, float] | None:
    """The planted marginal hazard ratios of the outcome and the modified outcome over the persons of
    ``sim`` (``simulate``'s rows with the same ``seed``; ``where``: those matching it), None without
    persons. ``TRUE_HR`` is conditional on the covariates; a hazard ratio is not collapsible, so the
    ratio between the whole population treated and the whole population untreated (what IPTW for the
    ATE estimates) lies nearer 1. Computed as defined: a Cox model of the arm (``causal.cox``, Efron
    ties) on both potential outcomes of every person (``potential_outcomes``)."""
    from omicslake.causal import cox

    rows = sim if where is None else sim.where(where)
    if not rows.limit(1).count():
        return None
    return {
        name: float(
            cox.fit(potential_outcomes(rows, seed, name), "days", "event", ["arm"], ties="efron").summary()[0]["hr"]
        )
        for name in ("outcome", "modified")
    }


def lines(df: DataFrame) -> DataFrame:
    """``simulate``'s rows as CSV lines (idx, line) in the order of ``columns``."""
    from omicslake.synth.writers import csv_line

    return df.select("idx", csv_line([F.col(c).cast("string") for c in columns()]).alias("line"))


def outcomes() -> list[str]:
    """The outcome names of ``simulate`` (each has ``<name>_days`` and ``<name>_event``)."""
    return ["outcome", "modified", *NEGATIVE_CONTROLS, "mediated"]


def effects() -> dict[str, Any]:
    """The planted truth, for the manifest."""
    return {
        "treatment_model": {"logit": TREATMENT, "centres": {"age": 55, "bmi": 28, "hba1c": 5.6}},
        "outcome_risk_log_hr": RISK,
        "drugs": DRUGS,
        "true_hr": {
            "outcome": TRUE_HR,
            "modified": {"M": 1.0, "F": MODIFIED_HR_FEMALE},
            **dict.fromkeys(NEGATIVE_CONTROLS, 1.0),
        },
        "effect_modifier": "sex",
        "negative_controls": list(NEGATIVE_CONTROLS),
        "base_hazard_per_year": {"outcome": 0.12, "negative_controls": 0.08},
        "follow_up_days": list(FOLLOW_UP_DAYS),
        "mediation": {
            "mediator": {
                "column": MEDIATOR_COLUMN,
                "loinc": "13457-7",
                "model": "linear",
                "coefficients": MEDIATOR,
            },
            "outcome": {
                "name": "mediated",
                "condition": OUTCOME_CONDITIONS["mediated"],
                "model": "logistic",
                "coefficients": MEDIATED,
            },
            "covariate_terms": "age (uncapped) per 10 y from 55, BMI per 5 from 28, HbA1c per % from 5.6",
        },
    }


def ehr_medications(sim: DataFrame, enc: DataFrame, seed: int) -> DataFrame:
    """The drug orders of the patients ``in_ehr`` (``simulate``'s rows), in the shape of
    ``people.medications`` plus ``stop``: ordered at the index wellness encounter (``enc``:
    ``people.encounters``), stopped at the end of follow-up. Columns idx, patient_id, enc_id, start,
    stop, med, dispenses, med_id."""
    index_visit = enc.where((F.col("kind") == "wellness") & (F.col("k") == 0)).select("idx", "enc_id", "start")
    rows = sim.where(F.col("in_ehr") == 1).join(index_visit, "idx")
    return rows.select(
        "idx",
        "patient_id",
        "enc_id",
        "start",
        (F.col("start").cast("long") + F.col("follow_up_days").cast("long") * 86400).cast("timestamp").alias("stop"),
        F.col("drug").alias("med"),
        F.greatest(F.floor(F.col("follow_up_days") / 30), F.lit(1)).cast("int").alias("dispenses"),
        uuid_from(seed, f"{STREAM}:med", "idx").alias("med_id"),
    )


def ehr_conditions(sim: DataFrame, enc: DataFrame, people: DataFrame, seed: int) -> DataFrame:
    """The outcomes that happened to the patients ``in_ehr``, in the shape of ``people.conditions``
    (idx, patient_id, birth_date, cond, enc_id, start, stop, cond_id): one condition per outcome
    with an event, dated index + days, recorded against the index wellness encounter."""
    index_visit = enc.where((F.col("kind") == "wellness") & (F.col("k") == 0)).select("idx", "enc_id")
    hits = F.array(
        *[
            F.struct(
                F.lit(OUTCOME_CONDITIONS[o]).alias("cond"),
                F.col(f"{o}_days").alias("days"),
                F.col(f"{o}_event").alias("e"),
            )
            for o in outcomes()
        ]
    )
    rows = (
        sim.where(F.col("in_ehr") == 1)
        .join(index_visit, "idx")
        .join(people.select("idx", "birth_date"), "idx")
        .select(
            "idx",
            "patient_id",
            "birth_date",
            "enc_id",
            "index_date",
            F.explode(F.filter(hits, lambda h: h["e"] == 1)).alias("h"),
        )
    )
    return rows.select(
        "idx",
        "patient_id",
        "birth_date",
        F.col("h.cond").alias("cond"),
        "enc_id",
        F.date_add("index_date", F.col("h.days")).alias("start"),
        F.lit(None).cast("date").alias("stop"),
        uuid_from(seed, f"{STREAM}:cond", "idx", F.col("h.cond")).alias("cond_id"),
    )


def ehr_observations(sim: DataFrame, enc: DataFrame, seed: int) -> DataFrame:
    """The mediator measurements of the patients ``in_ehr``, in the shape of ``people.observations``
    plus ``obs_id`` (idx, patient_id, enc_id, k, start, pos, obs, value, obs_id): LDL by calculation
    (``MEDIATOR_OBSERVATION``) ``MEDIATOR["day"]`` days after the index wellness encounter's start,
    recorded against that encounter."""
    index_visit = enc.where((F.col("kind") == "wellness") & (F.col("k") == 0)).select("idx", "enc_id", "k", "start")
    rows = sim.where(F.col("in_ehr") == 1).select("idx", "patient_id", MEDIATOR_COLUMN).join(index_visit, "idx")
    return rows.select(
        "idx",
        "patient_id",
        "enc_id",
        "k",
        (F.col("start").cast("long") + MEDIATOR["day"] * 86400).cast("timestamp").alias("start"),
        F.lit(-1).alias("pos"),
        F.lit(MEDIATOR_OBSERVATION).alias("obs"),
        F.col(MEDIATOR_COLUMN).alias("value"),
        uuid_from(seed, f"{STREAM}:obs", "idx").alias("obs_id"),
    )
