"""Raw files the way source systems deliver them: Synthea CSV and FHIR R4 bulk NDJSON.

Rows are rendered to text lines in Spark (quoting like Synthea's CSV writer), written in
parallel, then stitched: one ``<table>.csv`` with its header per batch folder, and FHIR's
``<Type>.000.ndjson, <Type>.001.ndjson, ...`` one file per partition as bulk export does.
Messy knobs are applied here, each flagged per row so the manifest can count exactly what the
files contain.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.synth import codes as C

SYNTHEA_COLUMNS: dict[str, list[str]] = {
    "patients": [
        "Id",
        "BIRTHDATE",
        "DEATHDATE",
        "SSN",
        "DRIVERS",
        "PASSPORT",
        "PREFIX",
        "FIRST",
        "MIDDLE",
        "LAST",
        "SUFFIX",
        "MAIDEN",
        "MARITAL",
        "RACE",
        "ETHNICITY",
        "GENDER",
        "BIRTHPLACE",
        "ADDRESS",
        "CITY",
        "STATE",
        "COUNTY",
        "FIPS",
        "ZIP",
        "LAT",
        "LON",
        "HEALTHCARE_EXPENSES",
        "HEALTHCARE_COVERAGE",
        "INCOME",
    ],
    "encounters": [
        "Id",
        "START",
        "STOP",
        "PATIENT",
        "ORGANIZATION",
        "PROVIDER",
        "PAYER",
        "ENCOUNTERCLASS",
        "CODE",
        "DESCRIPTION",
        "BASE_ENCOUNTER_COST",
        "TOTAL_CLAIM_COST",
        "PAYER_COVERAGE",
        "REASONCODE",
        "REASONDESCRIPTION",
    ],
    "conditions": ["START", "STOP", "PATIENT", "ENCOUNTER", "SYSTEM", "CODE", "DESCRIPTION"],
    "observations": ["DATE", "PATIENT", "ENCOUNTER", "CATEGORY", "CODE", "DESCRIPTION", "VALUE", "UNITS", "TYPE"],
    "medications": [
        "START",
        "STOP",
        "PATIENT",
        "PAYER",
        "ENCOUNTER",
        "CODE",
        "DESCRIPTION",
        "BASE_COST",
        "PAYER_COVERAGE",
        "DISPENSES",
        "TOTALCOST",
        "REASONCODE",
        "REASONDESCRIPTION",
    ],
    "procedures": [
        "START",
        "STOP",
        "PATIENT",
        "ENCOUNTER",
        "SYSTEM",
        "CODE",
        "DESCRIPTION",
        "BASE_COST",
        "REASONCODE",
        "REASONDESCRIPTION",
    ],
}
DRIFT_COLUMN = "SOURCE_SYSTEM"  # the extra column of batch 2's observations.csv


def iso_ts(col: Column) -> Column:
    """A timestamp column as an ISO 8601 UTC string (yyyy-MM-ddTHH:mm:ssZ), as Synthea and FHIR write it."""
    return F.date_format(col, "yyyy-MM-dd'T'HH:mm:ss'Z'")


def iso_date(col: Column) -> Column:
    """A date or timestamp column as an ISO date string (yyyy-MM-dd)."""
    return F.date_format(col, "yyyy-MM-dd")


def _lookup(key: Column, table: dict[str, tuple[str, ...]], field: int) -> Column:
    m = F.create_map(*[x for k, v in table.items() for x in (F.lit(k), F.lit(v[field]))])
    return m[key]


def code_of(key: Column, table: dict[str, tuple[str, ...]]) -> Column:
    """The code (field 0) of ``key`` in a code table (key -> (code, display, ...)); null for an unknown key."""
    return _lookup(key, table, 0)


def display_of(key: Column, table: dict[str, tuple[str, ...]]) -> Column:
    """The display text (field 1) of ``key`` in a code table (key -> (code, display, ...)); null for an unknown key."""
    return _lookup(key, table, 1)


def csv_field(col: Column) -> Column:
    """One CSV field as Synthea writes it: quoted when it holds a comma, quote or newline."""
    s = F.coalesce(col.cast("string"), F.lit(""))
    return F.when(s.rlike('[,"\\n]'), F.concat(F.lit('"'), F.regexp_replace(s, '"', '""'), F.lit('"'))).otherwise(s)


def csv_line(cols: Sequence[Column]) -> Column:
    """One CSV line (a string column) of the columns ``cols``, each quoted as ``csv_field`` does."""
    return F.concat_ws(",", *[csv_field(c) for c in cols])


def write_csv(lines: DataFrame, header: Sequence[str], target: Path, tmp: Path) -> list[str]:
    """lines (one string column 'line', sorted) -> one CSV file with a header."""
    parts = _write_text(lines, tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".csv.part")
    with staging.open("wb") as out:
        out.write((",".join(header) + "\n").encode())
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    staging.replace(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return [str(target)]


def write_ndjson(lines: DataFrame, resource: str, folder: Path, tmp: Path) -> list[str]:
    """lines -> <folder>/<resource>.000.ndjson, .001, ... (empty parts dropped)."""
    parts = [p for p in _write_text(lines, tmp) if p.stat().st_size > 0]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{resource}.*.ndjson"):
        old.unlink()
    out = []
    for i, part in enumerate(parts):
        target = folder / f"{resource}.{i:03d}.ndjson"
        shutil.move(str(part), target)
        out.append(str(target))
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_text(lines: DataFrame, tmp: Path) -> list[Path]:
    shutil.rmtree(tmp, ignore_errors=True)
    lines.select("line").write.text(str(tmp))
    return sorted(tmp.glob("part-*"))


# ----------------------------------------------------------------------------------- Synthea rows


def synthea_patients(p: DataFrame) -> DataFrame:
    """The people frame (one row per patient) as Synthea's patients.csv lines: columns idx and line."""
    return p.select(
        F.col("idx"),
        csv_line(
            [
                F.col("patient_id"),
                iso_date(F.col("birth_date")),
                iso_date(F.col("death_date")),
                F.col("ssn"),
                F.col("drivers"),
                F.col("passport"),
                F.col("prefix"),
                F.col("first"),
                F.col("middle"),
                F.col("last"),
                F.lit(None),
                F.col("maiden"),
                F.col("marital"),
                F.col("race"),
                F.col("ethnicity"),
                F.col("sex"),
                F.concat(F.col("city"), F.lit("  Massachusetts  US")),
                F.col("address"),
                F.col("city"),
                F.col("state"),
                F.col("county"),
                F.col("fips"),
                F.col("zip"),
                F.col("lat"),
                F.col("lon"),
                F.round(F.col("bmi") * 1000, 2),
                F.round(F.col("age") * 300, 2),
                F.lit(52000) + F.col("idx") % 40000,
            ]
        ).alias("line"),
    )


def encounter_cols(e: DataFrame, stop: Column | None = None, cost: Column | None = None) -> list[Column]:
    """The columns of Synthea's encounters.csv for encounter rows ``e``, in the file's order; ``stop``
    replaces the stop time and ``cost`` the total claim cost (the base cost stays) when given."""
    kind = F.col("kind")
    return [
        F.col("enc_id"),
        iso_ts(F.col("start")),
        iso_ts(stop if stop is not None else F.col("stop")),
        F.col("patient_id"),
        F.lit("ef58ea08-d883-3957-8300-150554edc8fb"),
        F.lit("0000016d-3a85-4cca-0000-00000000c5b2"),
        F.lit("b1c428d6-4f07-31e0-90f0-68ffa6ff8c76"),
        _lookup(kind, C.ENCOUNTERS, 2),
        code_of(kind, C.ENCOUNTERS),
        display_of(kind, C.ENCOUNTERS),
        F.col("cost"),
        cost if cost is not None else F.col("cost"),
        F.lit(0.0),
        F.when(kind == "diagnosis", F.lit(C.CONDITIONS["t2d"][0])),
        F.when(kind == "diagnosis", F.lit(C.CONDITIONS["t2d"][1])),
    ]


def observation_value(o: DataFrame, unit_swap: Column) -> tuple[Column, Column]:
    """VALUE and UNITS, with glucose in mmol/L or weight in lb where unit_swap is set."""
    obs = F.col("obs")
    value = (
        F.when(unit_swap & (obs == "glucose"), F.round(F.col("value") / 18.016, 2))
        .when(unit_swap & (obs == "weight"), F.round(F.col("value") * 2.20462, 1))
        .otherwise(F.col("value"))
    )
    units = (
        F.when(unit_swap & (obs == "glucose"), F.lit("mmol/L"))
        .when(unit_swap & (obs == "weight"), F.lit("[lb_av]"))
        .otherwise(_lookup(obs, C.OBSERVATIONS, 2))
    )
    return value, units


# ----------------------------------------------------------------------------------- FHIR rows


def _ref(prefix: str, col: str) -> Column:
    return F.struct(F.concat(F.lit(prefix + "/"), F.col(col)).alias("reference"))


def _coding(system: str, code: Column, display: Column) -> Column:
    return F.struct(
        F.array(F.struct(F.lit(system).alias("system"), code.alias("code"), display.alias("display"))).alias("coding"),
        display.alias("text"),
    )


def _ident(type_code: str | None, type_text: str | None, system: str, value: Column) -> Column:
    typ = (
        F.struct(
            F.array(
                F.struct(
                    F.lit("http://terminology.hl7.org/CodeSystem/v2-0203").alias("system"),
                    F.lit(type_code).alias("code"),
                    F.lit(type_text).alias("display"),
                )
            ).alias("coding"),
            F.lit(type_text).alias("text"),
        )
        if type_code
        else F.lit(None).cast("struct<coding:array<struct<system:string,code:string,display:string>>,text:string>")
    )
    return F.struct(typ.alias("type"), F.lit(system).alias("system"), value.alias("value"))


_OMB = {
    "white": ("2106-3", "White"),
    "black": ("2054-5", "Black or African American"),
    "asian": ("2028-9", "Asian"),
    "other": ("2131-1", "Other Race"),
}


def fhir_patient(p: DataFrame) -> DataFrame:
    """The people frame as FHIR R4 Patient resources (US Core race and ethnicity extensions, names,
    address, identifiers): columns idx and line, one NDJSON line each."""
    race_code = F.create_map(*[x for k, v in _OMB.items() for x in (F.lit(k), F.lit(v[0]))])[F.col("race")]
    race_disp = F.create_map(*[x for k, v in _OMB.items() for x in (F.lit(k), F.lit(v[1]))])[F.col("race")]
    eth_code = F.when(F.col("ethnicity") == "hispanic", "2135-2").otherwise("2186-5")
    eth_disp = F.when(F.col("ethnicity") == "hispanic", "Hispanic or Latino").otherwise("Not Hispanic or Latino")

    def omb_ext(url: str, code: Column, disp: Column) -> Column:
        inner = F.array(
            F.struct(
                F.lit("ombCategory").alias("url"),
                F.struct(
                    F.lit("urn:oid:2.16.840.1.113883.6.238").alias("system"), code.alias("code"), disp.alias("display")
                ).alias("valueCoding"),
                F.lit(None).cast("string").alias("valueString"),
            ),
            F.struct(
                F.lit("text").alias("url"),
                F.lit(None).cast("struct<system:string,code:string,display:string>").alias("valueCoding"),
                disp.alias("valueString"),
            ),
        )
        return F.struct(F.lit(url).alias("url"), inner.alias("extension"))

    resource = F.struct(
        F.lit("Patient").alias("resourceType"),
        F.col("patient_id").alias("id"),
        F.struct(
            F.array(F.lit("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")).alias("profile")
        ).alias("meta"),
        F.array(
            omb_ext("http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", race_code, race_disp),
            omb_ext("http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", eth_code, eth_disp),
        ).alias("extension"),
        F.array(
            _ident(None, None, "https://github.com/synthetichealth/synthea", F.col("patient_id")),
            _ident("MR", "Medical Record Number", "http://hospital.smarthealthit.org", F.col("mrn")),
            _ident("SS", "Social Security Number", "http://hl7.org/fhir/sid/us-ssn", F.col("ssn")),
            _ident("DL", "Driver's license number", "urn:oid:2.16.840.1.113883.4.3.25", F.col("drivers")),
            _ident(
                "PPN",
                "Passport Number",
                "http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber",
                F.col("passport"),
            ),
        ).alias("identifier"),
        F.array(
            F.struct(
                F.lit("official").alias("use"),
                F.col("last").alias("family"),
                F.array("first", "middle").alias("given"),
                F.array("prefix").alias("prefix"),
            )
        ).alias("name"),
        F.array(
            F.struct(F.lit("phone").alias("system"), F.col("phone").alias("value"), F.lit("home").alias("use"))
        ).alias("telecom"),
        F.when(F.col("sex") == "M", "male").otherwise("female").alias("gender"),
        iso_date(F.col("birth_date")).alias("birthDate"),
        F.date_format(F.col("death_date"), "yyyy-MM-dd'T'12:00:00'Z'").alias("deceasedDateTime"),
        F.array(
            F.struct(
                F.array("address").alias("line"),
                F.col("city").alias("city"),
                F.col("state").alias("state"),
                F.col("zip").alias("postalCode"),
                F.lit("US").alias("country"),
            )
        ).alias("address"),
    )
    return p.select("idx", F.to_json(resource).alias("line"))


def fhir_encounter(e: DataFrame) -> DataFrame:
    """Encounter rows as FHIR R4 Encounter resources: columns idx and line, one NDJSON line each."""
    kind = F.col("kind")
    resource = F.struct(
        F.lit("Encounter").alias("resourceType"),
        F.col("enc_id").alias("id"),
        F.lit("finished").alias("status"),
        F.struct(
            F.lit("http://terminology.hl7.org/CodeSystem/v3-ActCode").alias("system"),
            _lookup(kind, C.ENCOUNTERS, 3).alias("code"),
        ).alias("class"),
        F.array(_coding(C.SNOMED, code_of(kind, C.ENCOUNTERS), display_of(kind, C.ENCOUNTERS))).alias("type"),
        # Like Synthea, the subject's display carries the patient's name: PHI outside Patient.
        F.struct(
            F.concat(F.lit("Patient/"), F.col("patient_id")).alias("reference"),
            F.concat_ws(" ", "prefix", "first", "last").alias("display"),
        ).alias("subject"),
        F.struct(iso_ts(F.col("start")).alias("start"), iso_ts(F.col("stop")).alias("end")).alias("period"),
    )
    return e.select("idx", F.to_json(resource).alias("line"))


def fhir_condition(c: DataFrame) -> DataFrame:
    """Condition rows as FHIR R4 Condition resources (SNOMED codes): columns idx and line, one NDJSON line each."""
    cond = F.col("cond")
    resource = F.struct(
        F.lit("Condition").alias("resourceType"),
        F.col("cond_id").alias("id"),
        F.struct(
            F.array(
                F.struct(
                    F.lit("http://terminology.hl7.org/CodeSystem/condition-clinical").alias("system"),
                    F.when(F.col("stop").isNull(), "active").otherwise("resolved").alias("code"),
                )
            ).alias("coding")
        ).alias("clinicalStatus"),
        F.struct(
            F.array(
                F.struct(
                    F.lit(C.SNOMED).alias("system"),
                    code_of(cond, C.CONDITIONS).alias("code"),
                    display_of(cond, C.CONDITIONS).alias("display"),
                ),
                F.struct(
                    F.lit(C.ICD10).alias("system"),
                    _lookup(cond, C.CONDITIONS, 2).alias("code"),
                    display_of(cond, C.CONDITIONS).alias("display"),
                ),
            ).alias("coding"),
            display_of(cond, C.CONDITIONS).alias("text"),
        ).alias("code"),
        _ref("Patient", "patient_id").alias("subject"),
        _ref("Encounter", "enc_id").alias("encounter"),
        F.date_format(F.col("start"), "yyyy-MM-dd'T'00:00:00'Z'").alias("onsetDateTime"),
        F.date_format(F.col("stop"), "yyyy-MM-dd'T'00:00:00'Z'").alias("abatementDateTime"),
    )
    return c.select("idx", F.to_json(resource).alias("line"))


def fhir_observation(o: DataFrame) -> DataFrame:
    """Observation rows (labs and vitals) as FHIR R4 Observation resources (LOINC codes, UCUM units):
    columns idx and line, one NDJSON line each."""
    obs = F.col("obs")
    resource = F.struct(
        F.lit("Observation").alias("resourceType"),
        F.col("obs_id").alias("id"),
        F.lit("final").alias("status"),
        F.array(
            F.struct(
                F.array(
                    F.struct(
                        F.lit("http://terminology.hl7.org/CodeSystem/observation-category").alias("system"),
                        _lookup(obs, C.OBSERVATIONS, 3).alias("code"),
                    )
                ).alias("coding")
            )
        ).alias("category"),
        _coding(C.LOINC, code_of(obs, C.OBSERVATIONS), display_of(obs, C.OBSERVATIONS)).alias("code"),
        _ref("Patient", "patient_id").alias("subject"),
        _ref("Encounter", "enc_id").alias("encounter"),
        iso_ts(F.col("start")).alias("effectiveDateTime"),
        F.struct(
            F.col("value").alias("value"),
            _lookup(obs, C.OBSERVATIONS, 2).alias("unit"),
            F.lit(C.UCUM).alias("system"),
            _lookup(obs, C.OBSERVATIONS, 2).alias("code"),
        ).alias("valueQuantity"),
    )
    return o.select("idx", F.to_json(resource).alias("line"))


def fhir_medication(m: DataFrame) -> DataFrame:
    """Medication rows as FHIR R4 MedicationRequest resources (RxNorm codes): columns idx and line,
    one NDJSON line each."""
    med = F.col("med")
    resource = F.struct(
        F.lit("MedicationRequest").alias("resourceType"),
        F.col("med_id").alias("id"),
        F.lit("active").alias("status"),
        F.lit("order").alias("intent"),
        _coding(C.RXNORM, code_of(med, C.MEDICATIONS), display_of(med, C.MEDICATIONS)).alias(
            "medicationCodeableConcept"
        ),
        _ref("Patient", "patient_id").alias("subject"),
        _ref("Encounter", "enc_id").alias("encounter"),
        iso_ts(F.col("start")).alias("authoredOn"),
    )
    return m.select("idx", F.to_json(resource).alias("line"))


def fhir_procedure(pr: DataFrame) -> DataFrame:
    """Procedure rows as FHIR R4 Procedure resources (SNOMED codes): columns idx and line, one NDJSON line each."""
    proc = F.col("proc")
    resource = F.struct(
        F.lit("Procedure").alias("resourceType"),
        F.col("proc_id").alias("id"),
        F.lit("completed").alias("status"),
        _coding(C.SNOMED, code_of(proc, C.PROCEDURES), display_of(proc, C.PROCEDURES)).alias("code"),
        _ref("Patient", "patient_id").alias("subject"),
        _ref("Encounter", "enc_id").alias("encounter"),
        F.struct(iso_ts(F.col("start")).alias("start"), iso_ts(F.col("stop")).alias("end")).alias("performedPeriod"),
    )
    return pr.select("idx", F.to_json(resource).alias("line"))
