"""Synthetic patients and their clinical events, as Spark DataFrames (no driver loops).

``patients_base`` makes one row per patient with its latent truth (ancestry, BMI, HbA1c
trajectory, comorbidities, outcomes) and its PHI-shaped fields. ``encounters``,
``conditions``, ``observations``, ``medications`` and ``procedures`` derive the events from it
with narrow transformations only (explode), so row order, and thus the files, depend on the
seed alone.

Planted truth:
- incident type 2 diabetes within 365 days of the index (first wellness visit in 2019):
  logit = T2D_INTERCEPT + age, BMI, HbA1c at index and its yearly slope, ancestry, and the
  genetic score of the causal variants (genotyped patients).
- 30-day readmission after the first inpatient stay: logit = -2.6 + 1.1 x (Charlson conditions).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.synth import codes as C
from omicslake.synth.rand import bernoulli, choice, normal, randint, uniform, uuid_from

T2D_EFFECTS: dict[str, float] = {
    "intercept": -3.6,
    "age_per_10y": 0.45,  # (age - 55) / 10
    "bmi_per_5": 0.55,  # (bmi - 28) / 5
    "hba1c_per_pct": 1.6,  # hba1c - 5.6
    "hba1c_slope_per_pct_per_year": 4.0,
    "ancestry_1": 0.5,
    "ancestry_2": 0.25,
}
READMIT_EFFECTS: dict[str, float] = {"intercept": -2.6, "per_charlson_condition": 1.1}
ANCESTRY_WEIGHTS = [0.6, 0.25, 0.15]
CHARLSON_PREVALENCE = 0.12
HYPERTENSION_PREVALENCE = 0.3
PREVALENT_T2D = 0.05
LATE_T2D = 0.04
INPATIENT = 0.35
REFERENCE_DATE = "2025-01-01"  # the 'today' of the synthetic world, fixed for determinism


def _sigmoid(x: Column) -> Column:
    return F.lit(1.0) / (F.lit(1.0) + F.exp(-x))


def _date_plus(col: Column, days: Column) -> Column:
    return F.date_add(col, days.cast("int"))


def ancestry(seed: int, idx: Column) -> Column:
    """Ancestry group (0, 1, 2) of patient idx: the same expression for EHR and genomes."""
    u = uniform(seed, "anc", idx)
    return F.when(u < ANCESTRY_WEIGHTS[0], 0).when(u < ANCESTRY_WEIGHTS[0] + ANCESTRY_WEIGHTS[1], 1).otherwise(2)


def patients_base(spark: SparkSession, n: int, seed: int, partitions: int) -> DataFrame:
    """One row per patient: ids, demographics, PHI fields and latent truth (no genetics yet)."""
    s = seed
    df = spark.range(0, n, 1, partitions).withColumnRenamed("id", "idx")
    u = lambda stream: uniform(s, stream, "idx")  # noqa: E731
    df = (
        df.withColumn("patient_id", uuid_from(s, "patient", "idx"))
        .withColumn("ancestry", ancestry(s, F.col("idx")))
        .withColumn("sex", F.when(u("sex") < 0.5, "F").otherwise("M"))
        .withColumn(
            "race",
            F.when(F.col("ancestry") == 1, "black")
            .when(F.col("ancestry") == 2, "asian")
            .otherwise(F.when(u("race") < 0.93, "white").otherwise("other")),
        )
        .withColumn("ethnicity", F.when(u("eth") < 0.12, "hispanic").otherwise("nonhispanic"))
        .withColumn("index_date", _date_plus(F.to_date(F.lit("2019-01-01")), randint(s, "index", 0, 364, "idx")))
        # Ages 30-85 at index, and 3 % aged 90-99 so that the 90+ rule of de-identification bites.
        .withColumn(
            "age", F.when(u("old") < 0.03, F.lit(90.0) + u("age") * 9.5).otherwise(F.lit(30.0) + u("age") * 55.0)
        )
        .withColumn("birth_date", F.date_sub(F.col("index_date"), F.floor(F.col("age") * 365.25).cast("int")))
        .withColumn("history_years", randint(s, "hist", 1, 4, "idx"))
        .withColumn(
            "bmi",
            F.least(
                F.greatest(normal(s, "bmi", "idx", mean=27.5, sd=5.0) + F.col("ancestry") * 0.8, F.lit(16.0)),
                F.lit(55.0),
            ),
        )
        .withColumn(
            "height_cm",
            F.when(F.col("sex") == "M", normal(s, "height", "idx", mean=176, sd=7)).otherwise(
                normal(s, "height", "idx", mean=163, sd=6.5)
            ),
        )
        .withColumn(
            "hba1c",
            F.least(
                F.greatest(normal(s, "a1c", "idx", mean=5.6, sd=0.45) + 0.08 * (F.col("bmi") - 28) / 5, F.lit(4.0)),
                F.lit(12.0),
            ),
        )
        .withColumn("hba1c_slope", normal(s, "a1c_slope", "idx", mean=0.03, sd=0.08))
        .withColumn("chol", normal(s, "chol", "idx", mean=195, sd=35))
        .withColumn("sbp", normal(s, "sbp", "idx", mean=124, sd=14) + 0.25 * (F.col("age") - 55))
    )
    for cond in C.CHARLSON:
        df = df.withColumn(f"has_{cond}", bernoulli(s, f"c_{cond}", CHARLSON_PREVALENCE, "idx"))
    df = df.withColumn("has_hypertension", bernoulli(s, "c_htn", HYPERTENSION_PREVALENCE, "idx") | (F.col("sbp") > 150))
    df = df.withColumn("charlson_count", sum((F.col(f"has_{c}").cast("int") for c in C.CHARLSON), F.lit(0)))
    df = df.withColumn("prevalent_t2d", bernoulli(s, "prev_t2d", PREVALENT_T2D, "idx"))
    df = df.withColumn(
        "prevalent_t2d_date",
        F.when(F.col("prevalent_t2d"), F.date_sub("index_date", randint(s, "prev_date", 30, 1000, "idx"))),
    )
    # Inpatient stay and readmission.
    df = (
        df.withColumn("has_inpatient", bernoulli(s, "ip", INPATIENT, "idx"))
        .withColumn(
            "ip_start",
            F.when(F.col("has_inpatient"), _date_plus(F.col("index_date"), randint(s, "ip_day", 30, 700, "idx"))),
        )
        .withColumn("ip_stop", F.date_add("ip_start", randint(s, "los", 1, 7, "idx")))
        .withColumn(
            "p_readmit",
            _sigmoid(
                F.lit(READMIT_EFFECTS["intercept"])
                + READMIT_EFFECTS["per_charlson_condition"] * F.col("charlson_count")
            ),
        )
        .withColumn("readmit_30d", F.col("has_inpatient") & bernoulli(s, "readmit", F.col("p_readmit"), "idx"))
        .withColumn(
            "ip2_start",
            F.when(F.col("readmit_30d"), F.date_add("ip_stop", randint(s, "ip2_day", 1, 30, "idx"))).when(
                F.col("has_inpatient") & bernoulli(s, "ip_late", 0.15, "idx"),
                F.date_add("ip_stop", randint(s, "ip2_late", 45, 120, "idx")),
            ),
        )
        .withColumn("ip2_stop", F.date_add("ip2_start", randint(s, "los2", 1, 5, "idx")))
    )
    # Death after every generated event (those end by index + 830 days), before REFERENCE_DATE.
    df = df.withColumn(
        "death_date",
        F.when(
            bernoulli(s, "death", 0.04, "idx") | (F.col("age") > 90) & bernoulli(s, "death_old", 0.3, "idx"),
            F.least(
                _date_plus(F.col("index_date"), randint(s, "death_day", 900, 1800, "idx")),
                F.to_date(F.lit(REFERENCE_DATE)),
            ),
        ),
    )
    return _phi_fields(df, s)


def _phi_fields(df: DataFrame, s: int) -> DataFrame:
    """Direct identifiers where Synthea puts them (names with Synthea's numeric suffixes)."""

    def pick(stream: str, values: list[str]) -> Column:
        return choice(s, stream, values, "idx")

    digits = lambda stream, lo, hi: randint(s, stream, lo, hi, "idx").cast("string")  # noqa: E731
    place = randint(s, "place", 0, len(C.PLACES) - 1, "idx")
    # 2 % live in the small-population ZIP3 area (the last place).
    place = F.when(uniform(s, "smallzip", "idx") < 0.02, F.lit(len(C.PLACES) - 1)).otherwise(
        place % (len(C.PLACES) - 1)
    )
    places = F.array(*[F.struct(*[F.lit(v) for v in p]) for p in C.PLACES])
    return (
        df.withColumn(
            "first",
            F.concat(
                F.when(F.col("sex") == "M", pick("fm", C.FIRST_M)).otherwise(pick("ff", C.FIRST_F)),
                digits("fn", 10, 999),
            ),
        )
        .withColumn(
            "middle",
            F.concat(
                F.when(F.col("sex") == "M", pick("mm", C.FIRST_M)).otherwise(pick("mf", C.FIRST_F)),
                digits("mn", 10, 999),
            ),
        )
        .withColumn("last", F.concat(pick("last", C.LAST), digits("ln", 10, 999)))
        .withColumn(
            "maiden",
            F.when(
                (F.col("sex") == "F") & (uniform(s, "married", "idx") < 0.5),
                F.concat(pick("maiden", C.LAST), digits("mdn", 10, 999)),
            ),
        )
        .withColumn(
            "prefix",
            F.when(F.col("sex") == "M", "Mr.").otherwise(F.when(F.col("maiden").isNotNull(), "Mrs.").otherwise("Ms.")),
        )
        .withColumn(
            "ssn",
            F.format_string("999-%02d-%04d", randint(s, "ssn1", 10, 99, "idx"), randint(s, "ssn2", 0, 9999, "idx")),
        )
        .withColumn("drivers", F.format_string("S999%05d", randint(s, "dl", 0, 99999, "idx")))
        .withColumn("passport", F.format_string("X%08dX", randint(s, "pp", 0, 99999999, "idx")))
        .withColumn("mrn", F.format_string("MRN%09d", F.col("idx") * 7 + 1000003))
        .withColumn(
            "phone",
            F.format_string("555-%03d-%04d", randint(s, "ph1", 100, 999, "idx"), randint(s, "ph2", 0, 9999, "idx")),
        )
        .withColumn("address", F.format_string("%d %s", randint(s, "house", 1, 9999, "idx"), pick("street", C.STREETS)))
        .withColumn("place", F.element_at(places, (place + 1).cast("int")))
        .withColumn("city", F.col("place.col1"))
        .withColumn("county", F.col("place.col2"))
        .withColumn("fips", F.col("place.col3"))
        .withColumn("zip", F.col("place.col4"))
        .withColumn("state", F.when(F.col("fips").startswith("33"), "New Hampshire").otherwise("Massachusetts"))
        .withColumn("lat", F.round(F.lit(42.3) + (uniform(s, "lat", "idx") - 0.5), 6))
        .withColumn("lon", F.round(F.lit(-71.5) + (uniform(s, "lon", "idx") - 0.5) * 2, 6))
        .withColumn(
            "marital",
            F.when(F.col("maiden").isNotNull(), "M").otherwise(choice(s, "marital", ["S", "M", "D", "W"], "idx")),
        )
        .drop("place")
    )


def add_outcomes(df: DataFrame, seed: int, genetic: Column) -> DataFrame:
    """Incident T2D truth, given the genetic score column (0 for patients without a genome)."""
    e = T2D_EFFECTS
    logit = (
        F.lit(e["intercept"])
        + e["age_per_10y"] * (F.least(F.col("age"), F.lit(90.0)) - 55) / 10
        + e["bmi_per_5"] * (F.col("bmi") - 28) / 5
        + e["hba1c_per_pct"] * (F.col("hba1c") - 5.6)
        + e["hba1c_slope_per_pct_per_year"] * F.col("hba1c_slope")
        + F.when(F.col("ancestry") == 1, e["ancestry_1"]).when(F.col("ancestry") == 2, e["ancestry_2"]).otherwise(0.0)
        + genetic
    )
    s = seed
    return (
        df.withColumn("genetic_score", genetic)
        .withColumn("p_t2d", F.when(~F.col("prevalent_t2d"), _sigmoid(logit)))
        .withColumn(
            "t2d_incident", ~F.col("prevalent_t2d") & bernoulli(s, "t2d", F.coalesce(F.col("p_t2d"), F.lit(0.0)), "idx")
        )
        .withColumn(
            "t2d_date", F.when(F.col("t2d_incident"), F.date_add("index_date", randint(s, "t2d_day", 1, 365, "idx")))
        )
        .withColumn(
            "t2d_late_date",
            F.when(
                ~F.col("prevalent_t2d") & ~F.col("t2d_incident") & bernoulli(s, "t2d_late", LATE_T2D, "idx"),
                F.date_add("index_date", randint(s, "t2d_late_day", 400, 800, "idx")),
            ),
        )
    )


# -------------------------------------------------------------------------------------------- events


def _ts(date: Column, seed: int, stream: str, *keys: Column | str) -> Column:
    """A timestamp on that date, at a seeded time of day between 08:00 and 18:00."""
    secs = (F.lit(8 * 3600) + F.floor(uniform(seed, stream, *keys) * 36000)).cast("long")
    return (F.unix_timestamp(F.to_timestamp(date)) + secs).cast("timestamp")


def encounters(p: DataFrame, seed: int) -> DataFrame:
    """One row per encounter: patient_id, enc_id, kind, start, stop, k (visit number) and reason."""
    s = seed

    def enc(
        kind: str, k: Column, date: Column, keep: Column, stop_date: Column | None = None, reason: str | None = None
    ) -> Column:
        return F.struct(
            F.lit(kind).alias("kind"),
            k.cast("int").alias("k"),
            date.alias("date"),
            (stop_date if stop_date is not None else date).alias("stop_date"),
            F.lit(reason).cast("string").alias("reason"),
            keep.alias("keep"),
        )

    wellness = F.transform(
        F.sequence(-F.col("history_years"), F.lit(2)),
        lambda k: enc(
            "wellness",
            k,
            F.date_add(
                F.col("index_date"),
                (k * 365 + F.when(k == 0, 0).otherwise(randint(s, "wj", -20, 20, "idx", k))).cast("int"),
            ),
            F.lit(True),
        ),
    )
    outpatient = F.transform(
        F.sequence(F.lit(1), F.lit(3)),
        lambda k: enc(
            "outpatient",
            k,
            F.date_add(F.col("index_date"), randint(s, "od", -1400, 700, "idx", k)),
            k <= randint(s, "nout", 0, 3, "idx"),
            reason=None,
        ),
    )
    singles = F.array(
        enc(
            "diagnosis",
            F.lit(1),
            F.coalesce("t2d_date", "t2d_late_date", "prevalent_t2d_date"),
            F.col("t2d_incident") | F.col("t2d_late_date").isNotNull() | F.col("prevalent_t2d"),
            reason="t2d",
        ),
        enc("inpatient", F.lit(1), F.col("ip_start"), F.col("has_inpatient"), F.col("ip_stop")),
        enc("inpatient", F.lit(2), F.col("ip2_start"), F.col("ip2_start").isNotNull(), F.col("ip2_stop")),
    )
    allenc = F.filter(F.concat(wellness, outpatient, singles), lambda e: e["keep"])
    out = p.select("*", F.explode(allenc).alias("e")).select(
        *p.columns, "e.kind", "e.k", "e.date", "e.stop_date", "e.reason"
    )
    out = out.withColumn("enc_id", uuid_from(s, "enc", "idx", "kind", "k"))
    out = out.withColumn("start", _ts(F.col("date"), s, "enc_t", "enc_id"))
    out = out.withColumn(
        "stop",
        F.when(F.col("kind") == "inpatient", _ts(F.col("stop_date"), s, "enc_t2", "enc_id")).otherwise(
            (F.col("start").cast("long") + randint(s, "dur", 900, 3600, "enc_id")).cast("timestamp")
        ),
    )
    out = out.withColumn(
        "cost",
        F.round(
            F.when(F.col("kind") == "inpatient", 9000.0).otherwise(120.0) * (0.5 + uniform(s, "cost", "enc_id")), 2
        ),
    )
    return out.withColumn(
        "outpatient_reason",
        F.when(F.col("kind") == "outpatient", choice(s, "oreason", ["bronchitis", "sinusitis"], "enc_id")),
    )


def _first_wellness(enc: DataFrame) -> DataFrame:
    return enc.where((F.col("kind") == "wellness") & (F.col("k") == -F.col("history_years")))


def conditions(enc: DataFrame) -> DataFrame:
    """Condition rows: chronic ones at the first wellness visit, T2D at its diagnosis visit,
    acute ones at outpatient visits."""
    chronic = (
        _first_wellness(enc)
        .select(
            "idx",
            "patient_id",
            "birth_date",
            "enc_id",
            F.col("date").alias("start"),
            F.explode(
                F.filter(
                    F.array(
                        *[
                            F.struct(F.lit(c).alias("cond"), F.col(f"has_{c}").alias("keep"))
                            for c in (*C.CHARLSON, "hypertension")
                        ]
                    ),
                    lambda x: x["keep"],
                )
            ).alias("c"),
        )
        .select(
            "idx",
            "patient_id",
            "birth_date",
            F.col("c.cond").alias("cond"),
            "enc_id",
            "start",
            F.lit(None).cast("date").alias("stop"),
        )
    )
    events = enc.where(F.col("kind").isin("diagnosis", "outpatient")).select(
        "idx",
        "patient_id",
        "birth_date",
        F.when(F.col("kind") == "diagnosis", F.lit("t2d")).otherwise(F.col("outpatient_reason")).alias("cond"),
        "enc_id",
        F.col("date").alias("start"),
        F.when(F.col("kind") == "outpatient", F.date_add("date", 14)).alias("stop"),
    )
    return chronic.unionByName(events)


def observations(enc: DataFrame, seed: int) -> DataFrame:
    """Vitals and labs at every wellness visit, following each patient's latent trajectory."""
    s = seed
    x = enc.where(F.col("kind") == "wellness")
    k = F.col("k")
    dx = (F.col("t2d_incident") & (k > 0)) | F.col("prevalent_t2d")
    a1c = (
        F.col("hba1c")
        + F.col("hba1c_slope") * k
        + normal(s, "a1c_n", "enc_id", sd=0.1)
        + F.when(dx, 0.9).otherwise(0.0)
    )
    bmi_k = F.col("bmi") + 0.3 * k + normal(s, "bmi_n", "enc_id", sd=0.4)
    h = F.col("height_cm") + normal(s, "h_n", "enc_id", sd=0.3)
    vals = {
        "height": h,
        "weight": bmi_k * (h / 100) * (h / 100),
        "bmi": bmi_k,
        "sbp": F.col("sbp") + normal(s, "sbp_n", "enc_id", sd=6),
        "dbp": F.col("sbp") * 0.62 + normal(s, "dbp_n", "enc_id", sd=5),
        "hba1c": a1c,
        "glucose": 28.7 * a1c - 46.7 + normal(s, "glu_n", "enc_id", sd=8),
        "chol": F.col("chol") + normal(s, "chol_n", "enc_id", sd=10),
        "hdl": 50 + normal(s, "hdl_n", "enc_id", sd=10),
        "ldl": F.col("chol") * 0.6 + normal(s, "ldl_n", "enc_id", sd=10),
        "tg": 140 + normal(s, "tg_n", "enc_id", sd=40),
        "creatinine": F.when(F.col("has_ckd"), 1.9).otherwise(0.95) + normal(s, "cr_n", "enc_id", sd=0.12),
    }
    items = F.array(
        *[
            F.struct(F.lit(key).alias("obs"), F.round(v, 1 if key != "creatinine" else 2).alias("value"))
            for key, v in vals.items()
        ]
    )
    return x.select("idx", "patient_id", "enc_id", "k", "start", F.posexplode(items).alias("pos", "o")).select(
        "idx", "patient_id", "enc_id", "k", "start", "pos", F.col("o.obs").alias("obs"), F.col("o.value").alias("value")
    )


def medications(enc: DataFrame, seed: int) -> DataFrame:
    """Drug orders: metformin from a T2D diagnosis on, and a drug per treated chronic condition."""
    items = F.filter(
        F.array(
            F.struct(F.lit("lisinopril").alias("med"), F.col("has_hypertension").alias("keep")),
            F.struct(F.lit("furosemide").alias("med"), F.col("has_chf").alias("keep")),
            F.struct(F.lit("albuterol").alias("med"), F.col("has_copd").alias("keep")),
            F.struct(F.lit("simvastatin").alias("med"), (F.col("chol") > 220).alias("keep")),
        ),
        lambda x: x["keep"],
    )
    chronic = (
        _first_wellness(enc)
        .select("idx", "patient_id", "enc_id", "start", F.explode(items).alias("m"))
        .select("idx", "patient_id", "enc_id", "start", F.col("m.med").alias("med"))
    )
    dm = enc.where(F.col("kind") == "diagnosis").select(
        "idx", "patient_id", "enc_id", "start", F.lit("metformin").alias("med")
    )
    return chronic.unionByName(dm).withColumn("dispenses", randint(seed, "disp", 1, 24, "enc_id", "med"))


def procedures(enc: DataFrame) -> DataFrame:
    """A needs assessment at every wellness visit, reconciliation at admissions, a glucose screen at diagnosis."""
    proc = (
        F.when(F.col("kind") == "wellness", "assessment")
        .when(F.col("kind") == "inpatient", "med_rec")
        .when(F.col("kind") == "diagnosis", "glucose_screen")
    )
    return enc.select("idx", "patient_id", "enc_id", "start", "stop", proc.alias("proc")).where(
        F.col("proc").isNotNull()
    )


def truth_columns() -> list[str]:
    """The columns of the planted-truth table of the people: what the generator decided for each
    patient (risk factors, probabilities, outcomes and their dates), in order."""
    return [
        "patient_id",
        "index_date",
        "ancestry",
        "age",
        "bmi",
        "hba1c",
        "hba1c_slope",
        "genetic_score",
        "prevalent_t2d",
        "p_t2d",
        "t2d_incident",
        "t2d_date",
        "t2d_late_date",
        "charlson_count",
        "has_inpatient",
        "ip_stop",
        "p_readmit",
        "readmit_30d",
        "death_date",
    ]


def effects() -> dict[str, Any]:
    """The planted effect sizes, by outcome (t2d, readmission_30d): what the models should recover."""
    return {"t2d": T2D_EFFECTS, "readmission_30d": READMIT_EFFECTS}
