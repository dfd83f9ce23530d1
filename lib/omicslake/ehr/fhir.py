"""FHIR R4 (US Core, bulk NDJSON) bronze rows in the shape of Synthea's CSV tables.

Each function reads the ``resource`` JSON of one bronze.fhir_<resource> table with an explicit
schema and returns the Synthea columns conform_ehr knows (strings, as in bronze), plus the
provenance columns and ``_rescued``, so that all sources go through one conform path. Events keep the resource id as
``_ID``, their natural key. A line
that was not JSON stays a row with null fields and its ``_rescued`` text, and is quarantined
there as malformed.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

META = ["_source_file", "_file_sha256", "_line", "_batch_id", "_rescued", "_run_id", "_ingested_at"]
CODING = "struct<coding: array<struct<system: string, code: string, display: string>>, text: string>"
REF = "struct<reference: string>"
ENCOUNTER_CLASS = {
    "AMB": "ambulatory",
    "IMP": "inpatient",
    "ACUTE": "inpatient",
    "EMER": "emergency",
    "VR": "virtual",
    "HH": "home",
}


def _id(ref: Column) -> Column:
    """'Patient/<id>', 'urn:uuid:<id>' or '<id>' -> '<id>'."""
    return F.nullif(F.regexp_extract(ref, r"([^/:]+)$", 1), F.lit(""))


def _parse(df: DataFrame, schema: str) -> DataFrame:
    return df.withColumn("_j", F.from_json("resource", schema))


def _first_code(c: str) -> tuple[Column, Column, Column]:
    first = F.col(c).getField("coding").getItem(0)
    return first.getField("code"), first.getField("display"), first.getField("system")


def patients(df: DataFrame) -> DataFrame:
    """bronze.fhir_patient rows (``resource`` JSON) as Synthea patients: Id, BIRTHDATE, DEATHDATE
    (deceasedDateTime), GENDER (M/F for male/female, other values as given), RACE and ETHNICITY (the US
    Core extensions' text), ZIP and STATE of the first address, and META."""
    schema = (
        "id string, gender string, birthDate string, deceasedDateTime string, "
        "address array<struct<postalCode: string, state: string>>, "
        "extension array<struct<url: string, extension: array<struct<url: string, valueString: string>>>>"
    )
    j = _parse(df, schema)

    def ext(suffix: str) -> Column:
        e = F.filter("_j.extension", lambda x: x["url"].endswith(suffix)).getItem(0)
        return F.filter(e["extension"], lambda x: x["url"] == "text").getItem(0)["valueString"]

    gender = (
        F.when(F.col("_j.gender") == "male", "M")
        .when(F.col("_j.gender") == "female", "F")
        .otherwise(F.col("_j.gender"))
    )
    return j.select(
        F.col("_j.id").alias("Id"),
        F.col("_j.birthDate").alias("BIRTHDATE"),
        F.col("_j.deceasedDateTime").alias("DEATHDATE"),
        gender.alias("GENDER"),
        ext("us-core-race").alias("RACE"),
        ext("us-core-ethnicity").alias("ETHNICITY"),
        F.col("_j.address").getItem(0)["postalCode"].alias("ZIP"),
        F.col("_j.address").getItem(0)["state"].alias("STATE"),
        *META,
    )


def encounters(df: DataFrame) -> DataFrame:
    """bronze.fhir_encounter rows as Synthea encounters: Id, START/STOP (period), PATIENT (the subject's id),
    ENCOUNTERCLASS (``ENCOUNTER_CLASS`` of class.code, else the code in lower case), CODE and DESCRIPTION
    of the first type coding, TOTAL_CLAIM_COST null, and META."""
    schema = f"id string, class struct<code: string>, type array<{CODING}>, subject {REF}, period struct<start: string, end: string>"
    j = _parse(df, schema)
    cls = F.create_map(*[x for k, v in ENCOUNTER_CLASS.items() for x in (F.lit(k), F.lit(v))])
    code = F.col("_j.type").getItem(0).getField("coding").getItem(0)
    return j.select(
        F.col("_j.id").alias("Id"),
        F.col("_j.period.start").alias("START"),
        F.col("_j.period.end").alias("STOP"),
        _id(F.col("_j.subject.reference")).alias("PATIENT"),
        F.coalesce(cls[F.col("_j.class.code")], F.lower("_j.class.code")).alias("ENCOUNTERCLASS"),
        code["code"].alias("CODE"),
        code["display"].alias("DESCRIPTION"),
        F.lit(None).cast("string").alias("TOTAL_CLAIM_COST"),
        *META,
    )


def _event(df: DataFrame, fields: str, code_field: str, *columns: Column) -> DataFrame:
    """A clinical-event resource as a Synthea event row: the given columns (read from ``_j``, the
    resource parsed with ``code_field``, subject, encounter and ``fields``), PATIENT, ENCOUNTER,
    CODE, DESCRIPTION, the resource id as _ID, provenance."""
    j = _parse(df, f"{code_field} {CODING}, subject {REF}, encounter {REF}, {fields}")
    code, display, _ = _first_code(f"_j.{code_field}")
    return j.select(
        *columns,
        _id(F.col("_j.subject.reference")).alias("PATIENT"),
        _id(F.col("_j.encounter.reference")).alias("ENCOUNTER"),
        code.alias("CODE"),
        display.alias("DESCRIPTION"),
        F.col("id").alias("_ID"),
        *META,
    )


def conditions(df: DataFrame) -> DataFrame:
    """bronze.fhir_condition rows as Synthea conditions: START (onset, else recorded date), STOP (abatement),
    SYSTEM (the first coding's system), PATIENT, ENCOUNTER, CODE, DESCRIPTION, _ID (the resource id) and
    META."""
    _, _, system = _first_code("_j.code")
    return _event(
        df,
        "onsetDateTime string, abatementDateTime string, recordedDate string",
        "code",
        F.coalesce("_j.onsetDateTime", "_j.recordedDate").alias("START"),
        F.col("_j.abatementDateTime").alias("STOP"),
        system.alias("SYSTEM"),
    )


def observations(df: DataFrame) -> DataFrame:
    """bronze.fhir_observation rows as Synthea observations: DATE (effectiveDateTime), VALUE (valueQuantity's
    value as text), UNITS (its code, else its unit), PATIENT, ENCOUNTER, CODE, DESCRIPTION, _ID and META.
    """
    return _event(
        df,
        "effectiveDateTime string, valueQuantity struct<value: double, unit: string, code: string>",
        "code",
        F.col("_j.effectiveDateTime").alias("DATE"),
        F.col("_j.valueQuantity.value").cast("string").alias("VALUE"),
        F.coalesce("_j.valueQuantity.code", "_j.valueQuantity.unit").alias("UNITS"),
    )


def medications(df: DataFrame) -> DataFrame:
    """bronze.fhir_medicationrequest rows as Synthea medications: START (authoredOn), STOP null, DISPENSES
    (numberOfRepeatsAllowed), CODE and DESCRIPTION of medicationCodeableConcept, PATIENT, ENCOUNTER, _ID and
    META."""
    return _event(
        df,
        "authoredOn string, dispenseRequest struct<numberOfRepeatsAllowed: int>",
        "medicationCodeableConcept",
        F.col("_j.authoredOn").alias("START"),
        F.lit(None).cast("string").alias("STOP"),
        F.col("_j.dispenseRequest.numberOfRepeatsAllowed").cast("string").alias("DISPENSES"),
    )


def procedures(df: DataFrame) -> DataFrame:
    """bronze.fhir_procedure rows as Synthea procedures: START (performedPeriod.start, else
    performedDateTime), STOP (performedPeriod.end), PATIENT, ENCOUNTER, CODE, DESCRIPTION, _ID and META.
    """
    return _event(
        df,
        "performedDateTime string, performedPeriod struct<start: string, end: string>",
        "code",
        F.coalesce("_j.performedPeriod.start", "_j.performedDateTime").alias("START"),
        F.col("_j.performedPeriod.end").alias("STOP"),
    )


# Synthea table -> (the bronze table it comes from, its shape, the other bronze tables the shape
# takes: none, a FHIR resource names its patient itself)
AS_SYNTHEA = {
    "patients": ("fhir_patient", patients, ()),
    "encounters": ("fhir_encounter", encounters, ()),
    "conditions": ("fhir_condition", conditions, ()),
    "observations": ("fhir_observation", observations, ()),
    "medications": ("fhir_medicationrequest", medications, ()),
    "procedures": ("fhir_procedure", procedures, ()),
}
