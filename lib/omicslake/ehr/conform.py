"""Synthea bronze rows to OMOP CDM 5.4 shaped silver rows (pure transforms).

Each ``<table>_rows`` function takes the bronze DataFrame (strings) and returns typed,
de-identified rows with the helper columns the expectations in ``schemas/silver`` read:
``_malformed`` (the line had the wrong field count), ``_parse_errors`` (columns whose value
did not parse) and ``_nk`` (the natural key, for de-duplication). Source ids never survive:
they become keyed pseudonyms here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from omicslake.ehr.deid import pseudonym, shift_days, zip3

PROVENANCE = ["_source_file", "_line", "_batch_id"]
# OMOP visit concepts for Synthea's encounter classes.
VISIT_CONCEPTS = {
    "inpatient": 9201,
    "outpatient": 9202,
    "ambulatory": 9202,
    "wellness": 9202,
    "emergency": 9203,
    "urgentcare": 9203,
}
GENDER_CONCEPTS = {"M": 8507, "F": 8532}


@dataclass(frozen=True)
class Deid:
    """De-identification settings for the row builders: ``key`` (bytes) keys every pseudonym; with
    ``date_shift`` each patient's dates move back by one keyed offset of 1 to ``max_days`` days (never
    forward);
    ``reference_date`` (ISO date; None = today) is the day ages are taken at for the 90+ top-coding."""

    key: bytes
    date_shift: bool = False
    max_days: int = 365
    reference_date: str | None = None


def _ts(raw: str) -> Column:
    """Synthea's 2015-11-10T14:40:25Z, a date, OMOP's 2015-11-10 14:40:25, or any ISO-8601 time
    with an offset (FHIR).

    Each pattern is tried only on text of its shape: Spark raises (instead of returning null)
    when a pattern fails on text the pre-3.0 parser would have read.
    """
    c = F.col(raw)
    return F.coalesce(
        F.when(
            c.rlike(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"),
            F.expr(f"try_to_timestamp(`{raw}`, \"yyyy-MM-dd'T'HH:mm:ss'Z'\")"),
        ),
        F.when(c.rlike(r"^\d{4}-\d{2}-\d{2}$"), F.expr(f"try_to_timestamp(`{raw}`, 'yyyy-MM-dd')")),
        F.when(
            c.rlike(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"),
            F.expr(f"try_to_timestamp(`{raw}`, 'yyyy-MM-dd HH:mm:ss')"),
        ),
        F.when(c.rlike(r"^\d{4}-\d{2}-\d{2}T"), F.expr(f"try_cast(`{raw}` AS timestamp)")),
    )


def _date(raw: str) -> Column:
    return F.to_date(_ts(raw))


def _num(raw: str) -> Column:
    return F.expr(f"try_cast(`{raw}` AS double)")


def _parse_errors(pairs: list[tuple[str, Column]]) -> Column:
    """Names of the source columns whose value is there but did not parse."""
    return F.array_compact(
        F.array(*[F.when(F.col(raw).isNotNull() & typed.isNull(), F.lit(raw)) for raw, typed in pairs])
    )


def _base(df: DataFrame) -> DataFrame:
    return df.withColumn(
        "_malformed", F.coalesce(F.col("_rescued").getItem("_malformed_line").isNotNull(), F.lit(False))
    )


def _nk(*cols: str) -> Column:
    """Natural key; a malformed line is its own key (file and line), never merged with others."""
    return F.when(F.col("_malformed"), F.concat_ws(":", F.lit("malformed"), "_source_file", "_line")).otherwise(
        F.concat_ws("\x1f", *[F.coalesce(F.col(c), F.lit("")) for c in cols])
    )


def _shift_ts(d: Deid, ts: Column) -> Column:
    if not d.date_shift:
        return ts
    return F.timestamp_seconds(
        F.unix_timestamp(ts) + shift_days(d.key, F.col("PATIENT"), d.max_days).cast("long") * 86400
    )


def _shift_date(d: Deid, day: Column, patient_col: str = "PATIENT") -> Column:
    if not d.date_shift:
        return day
    return F.date_add(day, shift_days(d.key, F.col(patient_col), d.max_days))


def top_coded_birth(birth: Column, death: Column, reference: Column) -> tuple[Column, Column]:
    """(birth date as silver.person keeps it, whether it was top-coded): a person 90 or older at the
    reference date, or at death for a decedent (someone who died at 10 in 1930 is not 90+ today), gets
    that date minus 90 years as the birth date."""
    at = F.least(reference, death)  # least() skips a null death date
    old = F.months_between(at, birth) >= 90 * 12
    return F.when(old, F.add_months(at, -90 * 12)).otherwise(birth), old


def person_rows(df: DataFrame, d: Deid) -> DataFrame:
    """silver.person rows from bronze patients (Id, BIRTHDATE, DEATHDATE, GENDER, RACE, ETHNICITY, ZIP,
    STATE): person_key, gender concept, shifted birth and death dates (a birth date 90+ years before the
    reference date or death is top-coded to 90 years, age_90_plus), zip3; unparsable dates are null and
    named in _parse_errors."""
    ref = F.to_date(F.lit(d.reference_date)) if d.reference_date else F.current_date()
    birth = _shift_date(d, _date("BIRTHDATE"), "Id")
    death = _shift_date(d, _date("DEATHDATE"), "Id")
    kept_birth, old = top_coded_birth(birth, death, ref)
    gender = F.create_map(*[x for k, v in GENDER_CONCEPTS.items() for x in (F.lit(k), F.lit(v))])
    return _base(df).select(
        pseudonym(d.key, "person", F.col("Id")).alias("person_key"),
        F.col("GENDER").alias("gender_source_value"),
        gender[F.col("GENDER")].alias("gender_concept_id"),
        kept_birth.alias("birth_date"),
        F.year(kept_birth).alias("year_of_birth"),
        F.coalesce(old, F.lit(False)).alias("age_90_plus"),
        death.alias("death_date"),
        F.col("RACE").alias("race_source_value"),
        F.col("ETHNICITY").alias("ethnicity_source_value"),
        zip3(F.col("ZIP")).alias("zip3"),
        F.col("STATE").alias("state"),
        _parse_errors([("BIRTHDATE", _date("BIRTHDATE")), ("DEATHDATE", _date("DEATHDATE"))]).alias("_parse_errors"),
        "_malformed",
        _nk("Id").alias("_nk"),
        *PROVENANCE,
    )


def visit_rows(df: DataFrame, d: Deid) -> DataFrame:
    """silver.visit_occurrence rows from bronze encounters (Id, PATIENT, ENCOUNTERCLASS, CODE, START, STOP,
    TOTAL_CLAIM_COST): visit and person keys, the visit concept of the class (``VISIT_CONCEPTS``, null for
    another class), shifted start/end timestamps and total_cost; unparsable values are null and named in
    _parse_errors."""
    concept = F.create_map(*[x for k, v in VISIT_CONCEPTS.items() for x in (F.lit(k), F.lit(v))])
    return _base(df).select(
        pseudonym(d.key, "visit", F.col("Id")).alias("visit_key"),
        pseudonym(d.key, "person", F.col("PATIENT")).alias("person_key"),
        concept[F.lower("ENCOUNTERCLASS")].cast("int").alias("visit_concept_id"),
        F.col("ENCOUNTERCLASS").alias("visit_source_value"),
        F.col("CODE").alias("visit_source_code"),
        _shift_ts(d, _ts("START")).alias("visit_start_datetime"),
        _shift_ts(d, _ts("STOP")).alias("visit_end_datetime"),
        _num("TOTAL_CLAIM_COST").alias("total_cost"),
        _parse_errors(
            [("START", _ts("START")), ("STOP", _ts("STOP")), ("TOTAL_CLAIM_COST", _num("TOTAL_CLAIM_COST"))]
        ).alias("_parse_errors"),
        "_malformed",
        _nk("Id").alias("_nk"),
        *PROVENANCE,
    )


def _concept(df: DataFrame, concepts: DataFrame, vocabulary: str, code_col: str, out: str, name_col: str) -> DataFrame:
    """The concept id of the source code (0 when the concept file does not know it), and the
    concept's name where the source gave no description (OMOP exports carry none)."""
    c = concepts.where(F.col("vocabulary_id") == vocabulary).select(
        F.col("concept_code").alias("_code"), F.col("concept_id").alias("_cid"), F.col("concept_name").alias("_cname")
    )
    j = df.join(F.broadcast(c), df[code_col] == c["_code"], "left")
    return (
        j.withColumn(out, F.coalesce(F.col("_cid"), F.lit(0)).cast("int"))
        .withColumn(name_col, F.coalesce(F.col(name_col), F.col("_cname")))
        .drop("_code", "_cid", "_cname")
    )


_EVENT_KEY = ("PATIENT", "ENCOUNTER", "CODE")


def _event_rows(
    df: DataFrame, d: Deid, domain: str, key: str, when: str, columns: list[Column], parse: list[tuple[str, Column]]
) -> DataFrame:
    """A clinical event (condition, measurement, drug, procedure): its pseudonymous key from the
    natural key, person and visit keys, the given columns, and the helper columns the
    expectations read. The natural key is the source's own record id where it has one (``_ID``:
    a FHIR resource id, an OMOP row id), else (patient, encounter, code, time) for Synthea CSV,
    whose event rows carry no id."""
    nk: tuple[str, ...] = (*_EVENT_KEY, when)
    if "_ID" in df.columns:  # a row without its id falls back to the content key
        df = df.withColumn(
            "_ID",
            F.coalesce(
                F.col("_ID"), F.concat_ws("\x1f", F.lit("no-id"), *[F.coalesce(F.col(c), F.lit("")) for c in nk])
            ),
        )
        nk = ("_ID",)
    return _base(df).select(
        pseudonym(d.key, domain, *[F.col(c) for c in nk]).alias(key),
        pseudonym(d.key, "person", F.col("PATIENT")).alias("person_key"),
        F.when(F.col("ENCOUNTER").isNotNull(), pseudonym(d.key, "visit", F.col("ENCOUNTER"))).alias("visit_key"),
        *columns,
        _parse_errors(parse).alias("_parse_errors"),
        "_malformed",
        _nk(*nk).alias("_nk"),
        *PROVENANCE,
    )


def condition_rows(df: DataFrame, d: Deid, concepts: DataFrame) -> DataFrame:
    """silver.condition_occurrence rows from bronze conditions (PATIENT, ENCOUNTER, CODE, DESCRIPTION, START,
    STOP; _ID when the source has one): the SNOMED code with its concept id from ``concepts`` (OMOP CONCEPT
    rows; 0 when unknown) and shifted start/end dates; unparsable dates are null and named in _parse_errors."""
    rows = _event_rows(
        df,
        d,
        "condition",
        "condition_key",
        "START",
        [
            F.col("CODE").alias("condition_source_value"),
            F.lit("SNOMED").alias("condition_source_vocabulary"),
            F.col("DESCRIPTION").alias("condition_name"),
            _shift_date(d, _date("START")).alias("condition_start_date"),
            _shift_date(d, _date("STOP")).alias("condition_end_date"),
        ],
        [("START", _date("START")), ("STOP", _date("STOP"))],
    )
    return _concept(rows, concepts, "SNOMED", "condition_source_value", "condition_concept_id", "condition_name")


def measurement_rows(df: DataFrame, d: Deid, concepts: DataFrame, units: dict[str, Any]) -> DataFrame:
    """Observations with numbers, in the canonical unit of schemas/vocab/units.yaml."""
    spark = df.sparkSession
    conv = [(code, u["name"], u["unit"], src, float(f)) for code, u in units.items() for src, f in u["from"].items()]
    table = spark.createDataFrame(conv, "_code string, _name string, _unit string, _from string, _factor double")
    listed = spark.createDataFrame([(c,) for c in units], "_lcode string")
    value = _num("VALUE")
    joined = df.join(F.broadcast(table), (df["CODE"] == table["_code"]) & (df["UNITS"] == table["_from"]), "left").join(
        F.broadcast(listed), df["CODE"] == listed["_lcode"], "left"
    )
    rows = _event_rows(
        joined,
        d,
        "measurement",
        "measurement_key",
        "DATE",
        [
            F.col("CODE").alias("measurement_source_value"),
            F.coalesce(F.col("_name"), F.col("DESCRIPTION")).alias("measurement_name"),
            _shift_ts(d, _ts("DATE")).alias("measurement_datetime"),
            F.when(F.col("_factor").isNotNull(), F.round(value * F.col("_factor"), 4))
            .otherwise(value)
            .alias("value_as_number"),
            F.coalesce(F.col("_unit"), F.col("UNITS")).alias("unit_source_value"),
            F.col("VALUE").alias("value_source_value"),
            F.col("UNITS").alias("unit_as_delivered"),
            F.coalesce(F.col("_factor") != 1.0, F.lit(False)).alias("unit_converted"),
            (F.col("_lcode").isNull() | F.col("_factor").isNotNull() | F.col("_malformed")).alias("_unit_known"),
        ],
        [("DATE", _ts("DATE"))],
    )
    return _concept(rows, concepts, "LOINC", "measurement_source_value", "measurement_concept_id", "measurement_name")


def drug_rows(df: DataFrame, d: Deid, concepts: DataFrame) -> DataFrame:
    """silver.drug_exposure rows from bronze medications (PATIENT, ENCOUNTER, CODE, DESCRIPTION, START, STOP,
    DISPENSES): the RxNorm code with its concept id from ``concepts`` (0 when unknown), shifted start/end
    timestamps and quantity (a double); unparsable values are null and named in _parse_errors."""
    rows = _event_rows(
        df,
        d,
        "drug",
        "drug_exposure_key",
        "START",
        [
            F.col("CODE").alias("drug_source_value"),
            F.col("DESCRIPTION").alias("drug_name"),
            _shift_ts(d, _ts("START")).alias("drug_exposure_start_datetime"),
            _shift_ts(d, _ts("STOP")).alias("drug_exposure_end_datetime"),
            _num("DISPENSES").alias("quantity"),
        ],
        [("START", _ts("START")), ("STOP", _ts("STOP")), ("DISPENSES", _num("DISPENSES"))],
    )
    return _concept(rows, concepts, "RxNorm", "drug_source_value", "drug_concept_id", "drug_name")


def procedure_rows(df: DataFrame, d: Deid, concepts: DataFrame) -> DataFrame:
    """silver.procedure_occurrence rows from bronze procedures (PATIENT, ENCOUNTER, CODE, DESCRIPTION, START,
    STOP): the SNOMED code with its concept id from ``concepts`` (0 when unknown) and shifted start/end
    timestamps; unparsable times are null and named in _parse_errors."""
    rows = _event_rows(
        df,
        d,
        "procedure",
        "procedure_key",
        "START",
        [
            F.col("CODE").alias("procedure_source_value"),
            F.col("DESCRIPTION").alias("procedure_name"),
            _shift_ts(d, _ts("START")).alias("procedure_datetime"),
            _shift_ts(d, _ts("STOP")).alias("procedure_end_datetime"),
        ],
        [("START", _ts("START")), ("STOP", _ts("STOP"))],
    )
    return _concept(rows, concepts, "SNOMED", "procedure_source_value", "procedure_concept_id", "procedure_name")


def sample_link_rows(df: DataFrame, d: Deid) -> DataFrame:
    """silver.sample_link rows from the bronze sample link (sample_id, patient_id, consent): the sample id as
    given, the person_key of the patient, and consent true only for the text "true" in any case (anything
    else, or nothing, is false)."""
    return _base(df).select(
        F.col("sample_id"),
        pseudonym(d.key, "person", F.col("patient_id")).alias("person_key"),
        F.coalesce(F.lower("consent") == "true", F.lit(False)).alias("consent"),
        F.array().cast("array<string>").alias("_parse_errors"),
        "_malformed",
        _nk("sample_id").alias("_nk"),
        *PROVENANCE,
    )


def death_rows(person: DataFrame) -> DataFrame:
    """silver.death rows from the silver.person rows that have a death date."""
    return (
        person.select("person_key", "death_date", *PROVENANCE)
        .withColumn("_malformed", F.lit(False))
        .withColumn("_parse_errors", F.array().cast("array<string>"))
        .withColumn("_nk", F.col("person_key"))
    )


def dedupe(rows: DataFrame) -> DataFrame:
    """One row per natural key: the latest delivery wins (later batch, then later line).
    Adds _dup (true for the rows that lost)."""
    w = Window.partitionBy("_nk").orderBy(
        F.col("_batch_id").desc(), F.col("_line").desc(), F.col("_source_file").desc()
    )
    return rows.withColumn("_dup", F.row_number().over(w) > 1)


def with_person(rows: DataFrame, person: DataFrame) -> DataFrame:
    """Birth and death dates and whether the person exists, for the reference and date rules."""
    p = person.select(
        "person_key",
        F.col("birth_date").alias("_birth_date"),
        F.col("death_date").alias("_death_date"),
        F.lit(True).alias("_person_found"),
    )
    return rows.join(p, "person_key", "left").withColumn("_person_found", F.coalesce("_person_found", F.lit(False)))


def row_hash(columns: list[str]) -> Column:
    """SHA-256 (64 hex characters) of the named columns' values as one JSON object: the row's content
    fingerprint (silver's ``_row_hash``)."""
    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)
