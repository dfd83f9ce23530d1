"""OMOP CDM bronze rows (CSV exports; 5.4, and 5.3 and 5.0 read as 5.4) in the shape of Synthea's CSV tables.

Like ``ehr.fhir``, each function returns the Synthea columns conform_ehr knows (strings, as in
bronze) plus provenance and ``_rescued``, so that the three sources share one conform path:
one set of expectations, units, de-identification and de-duplication.

Patients are known by ``person_source_value`` when the export carries it (the source system's
id, so that the biobank's sample link, keyed by it, still finds them) and by
``omop-person-<person_id>`` otherwise. Event tables refer to ``person_id``; it is mapped through
PERSON, and an event whose person_id is not in PERSON keeps the ``omop-person-`` form, so it
fails the person-exists rule in conform instead of disappearing in a join. Event rows keep their
row id as ``_ID``, the natural key (two exposures with one start are two rows). Source values
(``*_source_value``: SNOMED, LOINC, RxNorm codes) are the codes conform maps to concepts.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

META = ["_source_file", "_file_sha256", "_line", "_batch_id", "_rescued", "_run_id", "_ingested_at"]
# OMOP visit concepts -> the encounter classes conform maps back to visit concepts.
VISIT_CLASS = {
    "9201": "inpatient",
    "262": "inpatient",
    "9202": "outpatient",
    "9203": "emergency",
    "581458": "pharmacy",
    "581476": "home",
    "5083": "telehealth",
}
GENDER = {"8507": "M", "8532": "F"}
_STR = "string"


# Columns that CDM 5.4 renamed (OHDSI CommonDataModel, "Changes in v5.4"): 5.3 name -> 5.4 name, per
# table. 5.0 and 5.3 exports are read through this map, so the 5.4 contracts and conform apply alike;
# columns that 5.4 dropped (5.0's *_time, effective_drug_dose...) stay in _rescued by name.
CDM54_RENAMES: dict[str, dict[str, str]] = {
    "visit_occurrence": {
        "admitting_source_concept_id": "admitted_from_concept_id",
        "admitting_source_value": "admitted_from_source_value",
        "discharge_to_concept_id": "discharged_to_concept_id",
        "discharge_to_source_value": "discharged_to_source_value",
    },
    "visit_detail": {
        "admitting_source_concept_id": "admitted_from_concept_id",
        "admitting_source_value": "admitted_from_source_value",
        "discharge_to_concept_id": "discharged_to_concept_id",
        "discharge_to_source_value": "discharged_to_source_value",
        "visit_detail_parent_id": "parent_visit_detail_id",
    },
}
# Header columns that only one CDM version has: how an export's version is recognised.
_CDM_MARKS = {
    "5.0": {("person", "time_of_birth"), ("visit_occurrence", "visit_start_time"), ("measurement", "measurement_time")},
    "5.3": {("visit_occurrence", "admitting_source_concept_id"), ("visit_occurrence", "discharge_to_concept_id")},
    "5.4": {("visit_occurrence", "admitted_from_concept_id"), ("procedure_occurrence", "procedure_end_date")},
}


def cdm_version(table: str, header: list[str]) -> str | None:
    """The OMOP CDM version a table's (lower-case) header belongs to: "5.0", "5.3" or "5.4", or None when
    the header has no column that tells the versions apart."""
    cols = set(header)
    found = [v for v, marks in _CDM_MARKS.items() if any(t == table and c in cols for t, c in marks)]
    return found[0] if len(found) == 1 else None


def to_cdm54(table: str, header: list[str]) -> list[str]:
    """A (lower-case) header with the columns CDM 5.4 renamed given their 5.4 names; others unchanged."""
    renames = CDM54_RENAMES.get(table, {})
    return [renames.get(h, h) for h in header]


def _when(dt: str, d: str) -> Column:
    """The datetime column when given, else the date column."""
    return F.coalesce(F.col(dt), F.col(d))


def _fallback_id(person_id: Column) -> Column:
    return F.concat(F.lit("omop-person-"), person_id)


def _sid() -> Column:
    """A PERSON row's source id: person_source_value, else omop-person-<person_id>."""
    return F.coalesce(F.nullif(F.trim("person_source_value"), F.lit("")), _fallback_id(F.col("person_id")))


def _source_ids(person: DataFrame) -> DataFrame:
    """person_id -> the patient's source id (one row per person_id: the latest delivery)."""
    return (
        person.where(F.col("person_id").isNotNull())
        .groupBy("person_id")
        .agg(F.max_by(_sid(), F.struct("_batch_id", "_line")).alias("_pid"))
    )


def _with_patient(df: DataFrame, person: DataFrame | None) -> DataFrame:
    if person is None:
        return df.withColumn("PATIENT", _fallback_id(F.col("person_id")))
    ids = _source_ids(person)
    return (
        df.join(ids, "person_id", "left")
        .withColumn("PATIENT", F.coalesce("_pid", _fallback_id(F.col("person_id"))))
        .drop("_pid")
    )


def patients(df: DataFrame, death: DataFrame | None = None) -> DataFrame:
    """bronze.omop_person rows as Synthea patients: Id (the source id, see the module docstring), BIRTHDATE
    (birth_datetime, else year-month-day of birth, a missing month or day taken as 1), DEATHDATE (the
    earliest in ``death``, bronze.omop_death; null without it), GENDER (M/F from gender_concept_id, else
    gender_source_value), RACE, ETHNICITY, ZIP and STATE null, and META."""
    rows = df
    if death is not None:
        first = death.groupBy("person_id").agg(F.min(_when("death_datetime", "death_date")).alias("_death"))
        rows = rows.join(first, "person_id", "left")
    else:
        rows = rows.withColumn("_death", F.lit(None).cast(_STR))
    born = F.when(F.col("birth_datetime").isNotNull(), F.col("birth_datetime")).otherwise(
        F.when(
            F.col("year_of_birth").isNotNull(),
            F.concat_ws(
                "-",
                "year_of_birth",
                F.lpad(F.coalesce("month_of_birth", F.lit("1")), 2, "0"),
                F.lpad(F.coalesce("day_of_birth", F.lit("1")), 2, "0"),
            ),
        )
    )
    gender = F.create_map(*[x for k, v in GENDER.items() for x in (F.lit(k), F.lit(v))])
    return rows.select(
        _sid().alias("Id"),
        born.alias("BIRTHDATE"),
        F.col("_death").alias("DEATHDATE"),
        F.coalesce(gender[F.col("gender_concept_id")], F.col("gender_source_value")).alias("GENDER"),
        F.col("race_source_value").alias("RACE"),
        F.col("ethnicity_source_value").alias("ETHNICITY"),
        F.lit(None).cast(_STR).alias("ZIP"),
        F.lit(None).cast(_STR).alias("STATE"),
        *META,
    )


def encounters(df: DataFrame, person: DataFrame | None = None) -> DataFrame:
    """bronze.omop_visit_occurrence rows as Synthea encounters: Id (visit_occurrence_id), START/STOP
    (datetime, else date), PATIENT (mapped through ``person`` (bronze.omop_person)), ENCOUNTERCLASS (``VISIT_CLASS`` of
    visit_concept_id, else "concept <id>"), CODE (visit_concept_id), DESCRIPTION and cost null, and META."""
    cls = F.create_map(*[x for k, v in VISIT_CLASS.items() for x in (F.lit(k), F.lit(v))])
    return _with_patient(df, person).select(
        F.col("visit_occurrence_id").alias("Id"),
        _when("visit_start_datetime", "visit_start_date").alias("START"),
        _when("visit_end_datetime", "visit_end_date").alias("STOP"),
        "PATIENT",
        F.coalesce(cls[F.col("visit_concept_id")], F.concat(F.lit("concept "), F.col("visit_concept_id"))).alias(
            "ENCOUNTERCLASS"
        ),
        # visit_source_value is often the source system's encounter id: never carried to silver.
        F.col("visit_concept_id").alias("CODE"),
        F.lit(None).cast(_STR).alias("DESCRIPTION"),
        F.lit(None).cast(_STR).alias("TOTAL_CLAIM_COST"),
        *META,
    )


def _event(df: DataFrame, person: DataFrame | None, id_col: str, code_col: str, *columns: Column) -> DataFrame:
    """An OMOP event row as a Synthea event: the given time/value columns, PATIENT, ENCOUNTER,
    CODE (the source value), no DESCRIPTION (conform fills the concept name), the row id as _ID."""
    return _with_patient(df, person).select(
        *columns,
        "PATIENT",
        F.col("visit_occurrence_id").alias("ENCOUNTER"),
        F.col(code_col).alias("CODE"),
        F.lit(None).cast(_STR).alias("DESCRIPTION"),
        F.col(id_col).alias("_ID"),
        *META,
    )


def conditions(df: DataFrame, person: DataFrame | None = None) -> DataFrame:
    """bronze.omop_condition_occurrence rows as Synthea conditions: START/STOP (datetime, else date), SYSTEM
    "SNOMED", CODE (condition_source_value), _ID (condition_occurrence_id), PATIENT mapped through
    ``person`` (bronze.omop_person), ENCOUNTER, and META."""
    return _event(
        df,
        person,
        "condition_occurrence_id",
        "condition_source_value",
        _when("condition_start_datetime", "condition_start_date").alias("START"),
        _when("condition_end_datetime", "condition_end_date").alias("STOP"),
        F.lit("SNOMED").alias("SYSTEM"),
    )


def observations(df: DataFrame, person: DataFrame | None = None) -> DataFrame:
    """MEASUREMENT rows (labs and vitals) as Synthea observations."""
    return _event(
        df,
        person,
        "measurement_id",
        "measurement_source_value",
        _when("measurement_datetime", "measurement_date").alias("DATE"),
        F.col("value_as_number").alias("VALUE"),
        F.col("unit_source_value").alias("UNITS"),
    )


def medications(df: DataFrame, person: DataFrame | None = None) -> DataFrame:
    """bronze.omop_drug_exposure rows as Synthea medications: START/STOP (datetime, else date), DISPENSES
    (quantity), CODE (drug_source_value), _ID (drug_exposure_id), PATIENT mapped through
    ``person`` (bronze.omop_person), ENCOUNTER, and META."""
    return _event(
        df,
        person,
        "drug_exposure_id",
        "drug_source_value",
        _when("drug_exposure_start_datetime", "drug_exposure_start_date").alias("START"),
        _when("drug_exposure_end_datetime", "drug_exposure_end_date").alias("STOP"),
        F.col("quantity").alias("DISPENSES"),
    )


def procedures(df: DataFrame, person: DataFrame | None = None) -> DataFrame:
    """bronze.omop_procedure_occurrence rows as Synthea procedures: START/STOP (procedure_datetime and
    procedure_end_datetime, else the dates), CODE (procedure_source_value), _ID (procedure_occurrence_id),
    PATIENT mapped through ``person`` (bronze.omop_person), ENCOUNTER, and META."""
    return _event(
        df,
        person,
        "procedure_occurrence_id",
        "procedure_source_value",
        _when("procedure_datetime", "procedure_date").alias("START"),
        _when("procedure_end_datetime", "procedure_end_date").alias("STOP"),
    )


# Synthea table -> (the bronze table it comes from, its shape, the other bronze tables the shape
# takes after it: each a DataFrame, or None when the export has no such table)
AS_SYNTHEA = {
    "patients": ("omop_person", patients, ("omop_death",)),
    "encounters": ("omop_visit_occurrence", encounters, ("omop_person",)),
    "conditions": ("omop_condition_occurrence", conditions, ("omop_person",)),
    "observations": ("omop_measurement", observations, ("omop_person",)),
    "medications": ("omop_drug_exposure", medications, ("omop_person",)),
    "procedures": ("omop_procedure_occurrence", procedures, ("omop_person",)),
}
