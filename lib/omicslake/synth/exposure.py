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
  death when that comes first.

With ``jobs.generate.exposure_share`` > 0 that share of the patients (its own stream) also has the
exposure in the EHR files (``ehr_medications`` / ``ehr_conditions``): the drug ordered at the index
wellness visit, stopped at the end of follow-up, and each outcome that happened as a condition on its
date (recorded against the prescribing encounter). ``in_ehr`` in truth/exposure.csv says who.

Times are exponential by inverse transform of counter-based uniforms (``synth.rand``), so they
depend on (seed, patient) only.
"""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.synth.rand import uniform, uuid_from

STREAM = "exposure"
TREATMENT = {"intercept": -0.4, "age_per_10y": 0.5, "bmi_per_5": 0.5, "hba1c_per_pct": 1.0}
RISK = {"age_per_10y": 0.45, "bmi_per_5": 0.35, "hba1c_per_pct": 0.6}
BASE_HAZARD_PER_DAY = 0.12 / 365.25
TRUE_HR = 0.6
MODIFIED_HR_FEMALE = 0.5
NEGATIVE_CONTROLS = ("nc_1", "nc_2", "nc_3", "nc_4", "nc_5")
NC_BASE_HAZARD_PER_DAY = 0.08 / 365.25
FOLLOW_UP_DAYS = (365, 5 * 365)
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
}


def _z(c: str, centre: float, per: float) -> Column:
    return (F.least(F.col(c), F.lit(90.0)) - centre) / per if c == "age" else (F.col(c) - centre) / per


def _confounders(coef: dict[str, float]) -> Column:
    return (
        coef["age_per_10y"] * _z("age", 55, 10)
        + coef["bmi_per_5"] * _z("bmi", 28, 5)
        + coef["hba1c_per_pct"] * _z("hba1c", 5.6, 1)
    )


def _time(seed: int, name: str, rate: Column) -> Column:
    u = F.greatest(uniform(seed, f"{STREAM}:{name}", "idx"), F.lit(1e-300))
    return -F.log(u) / rate


def simulate(people: DataFrame, seed: int, share: float = 0.0) -> DataFrame:
    """people (idx, patient_id, sex, age, bmi, hba1c, index_date, optionally death_date:
    ``people.patients_base``) -> one row per person: idx, patient_id, index_date, treated (1 new drug
    / 0 comparator), drug, sex, age, bmi, hba1c, follow_up_days (censored at death), in_ehr (1 for
    the ``share`` of patients whose exposure the EHR files hold), and for each outcome o in (outcome,
    modified, nc_1..nc_5): ``o_days`` (days to the outcome or to censoring, whole days >= 1) and
    ``o_event`` (0/1)."""
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
    risk = _confounders(RISK)
    t = F.col("treated")
    female = (F.col("sex") == "F").cast("int")
    rates = {
        "outcome": F.lit(BASE_HAZARD_PER_DAY) * F.exp(risk + F.lit(math.log(TRUE_HR)) * t),
        "modified": F.lit(BASE_HAZARD_PER_DAY) * F.exp(risk + F.lit(math.log(MODIFIED_HR_FEMALE)) * t * female),
        **{nc: F.lit(NC_BASE_HAZARD_PER_DAY) * F.exp(risk) for nc in NEGATIVE_CONTROLS},
    }
    for name, rate in rates.items():
        tt = _time(s, name, rate)
        df = df.withColumn(f"{name}_event", (tt <= F.col("follow_up_days")).cast("int")).withColumn(
            f"{name}_days",
            F.when(tt <= F.col("follow_up_days"), F.greatest(F.ceil(tt), F.lit(1)))
            .otherwise(F.col("follow_up_days"))
            .cast("int"),
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
    return df.select(*keep, *[c for o in outcomes() for c in (f"{o}_event", f"{o}_days")])


def columns() -> list[str]:
    """The columns of truth/exposure.csv, in order."""
    cols = ["patient_id", "index_date", "treated", "drug", "follow_up_days", "in_ehr"]
    for o in outcomes():
        cols += [f"{o}_days", f"{o}_event"]
    return cols


def lines(df: DataFrame) -> DataFrame:
    """``simulate``'s rows as CSV lines (idx, line) in the order of ``columns``."""
    from omicslake.synth.writers import csv_line

    return df.select("idx", csv_line([F.col(c).cast("string") for c in columns()]).alias("line"))


def outcomes() -> list[str]:
    """The outcome names of ``simulate`` (each has ``<name>_days`` and ``<name>_event``)."""
    return ["outcome", "modified", *NEGATIVE_CONTROLS]


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
