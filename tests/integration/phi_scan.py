"""PHI scan for the EHR tests: do any of bronze's direct identifiers reach silver, gold or quarantine?

Identifiers come from the bronze patient tables (Synthea, FHIR or OMOP; REDCap records, by their
dictionary: ``survey_identifiers``): source ids, SSNs, licence,
passport and medical record numbers, phone numbers, street addresses, single names and "first last" /
"last first" name pairs. Both sides are cut into lower-case word tokens (letters and digits; every
other character separates, JSON escapes such as ``\\u001f`` too), so "999-12-3456" is the token run
``999 12 3456`` and is found inside "ssn:999-12-3456;", inside a JSON document or next to other words.
A hit is an identifier's whole token run at any position of a value: a run starting at each token is
compared with the identifiers that start with that token (a broadcast join on the first token).
Identifiers shorter than ``MIN_CHARS`` once tokenised are left out (too many false hits, too little
identifying). Results are counts per (column, kind): values never leave the scan (they are PHI).
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from omicslake.io.delta import Lake

# Java regex: one or more characters that are not a letter, a combining mark or a digit.
SEPARATORS = r"[^\p{L}\p{M}\p{N}]+"
# A JSON escape inside a stored JSON text (quarantine.row_json): \n, \", \u001f... separates words too.
JSON_ESCAPE = r"\\(u[0-9a-fA-F]{4}|[nrtbf\"\\/])"
MIN_CHARS = 5
Hits = dict[tuple[str, str], int]


def tokens(text: Column) -> Column:
    """The lower-case word tokens of a text column (an empty array for null)."""
    clean = F.regexp_replace(F.coalesce(text, F.lit("")), JSON_ESCAPE, " ")
    return F.array_remove(F.split(F.lower(clean), SEPARATORS), "")


def identifiers(pairs: Iterable[tuple[str, DataFrame]]) -> DataFrame:
    """(kind, text, first, n) for every distinct identifier: its tokens joined by one space, its first
    token and token count. ``pairs``: (kind, a DataFrame of one string column ``v``)."""
    parts = [df.select(F.lit(kind).alias("kind"), F.col("v").cast("string").alias("v")) for kind, df in pairs]
    allv = parts[0]
    for p in parts[1:]:
        allv = allv.unionByName(p)
    t = tokens(F.col("v"))
    return (
        allv.select("kind", F.array_join(t, " ").alias("text"), t.getItem(0).alias("first"), F.size(t).alias("n"))
        .where(F.length("text") >= MIN_CHARS)
        .distinct()
    )


def _values(df: DataFrame, *cols: str) -> DataFrame:
    """One column ``v``: the values of cols (flattened when a column is an array of strings)."""
    out = []
    for c in cols:
        col = F.col(c)
        is_array = isinstance(df.select(col).schema.fields[0].dataType, T.ArrayType)
        out.append(df.select((F.explode_outer(col) if is_array else col).alias("v")))
    u = out[0]
    for o in out[1:]:
        u = u.unionByName(o)
    return u.where(F.col("v").isNotNull())


def _pairs(df: DataFrame, first: Column, last: Column) -> DataFrame:
    """'first last' and 'last first' (as in 'Smith, John') for each row that has both."""
    both = df.where(first.isNotNull() & last.isNotNull())
    return both.select(F.concat_ws(" ", first, last).alias("v")).unionByName(
        both.select(F.concat_ws(" ", last, first).alias("v"))
    )


def synthea_identifiers(patients: DataFrame, encounters: DataFrame | None = None) -> list[tuple[str, DataFrame]]:
    """bronze.synthea_patients (and the source encounter ids of bronze.synthea_encounters)."""
    ids = [
        ("source id", _values(patients, "Id")),
        ("ssn", _values(patients, "SSN")),
        ("licence", _values(patients, "DRIVERS")),
        ("passport", _values(patients, "PASSPORT")),
        ("name", _values(patients, "FIRST", "MIDDLE", "LAST", "MAIDEN")),
        ("name pair", _pairs(patients, F.col("FIRST"), F.col("LAST"))),
        ("name pair", _pairs(patients, F.col("FIRST"), F.col("MAIDEN"))),
        ("address", _values(patients, "ADDRESS")),
        ("birthplace", _values(patients, "BIRTHPLACE")),
    ]
    if encounters is not None:
        ids.append(("source id", _values(encounters, "Id")))
    return ids


FHIR_PATIENT = (
    "id string, identifier array<struct<value: string>>, telecom array<struct<value: string>>, "
    "name array<struct<family: string, given: array<string>>>, address array<struct<line: array<string>>>, "
    "extension array<struct<url: string, valueString: string>>"
)


def fhir_identifiers(patient: DataFrame, encounter: DataFrame | None = None) -> list[tuple[str, DataFrame]]:
    """bronze.fhir_patient's resources (and the encounter resource ids of bronze.fhir_encounter)."""
    j = patient.where("resource IS NOT NULL").select(F.from_json("resource", FHIR_PATIENT).alias("j")).select("j.*")
    names = j.select(F.explode("name").alias("nm")).select(
        F.col("nm.family").alias("family"), F.explode_outer("nm.given").alias("given")
    )
    maiden = (
        j.select(F.explode("extension").alias("e"))
        .where(F.col("e.url").endswith("mothersMaidenName"))
        .select(F.col("e.valueString").alias("v"))
    )
    ids = [
        ("source id", _values(j, "id")),
        (
            "identifier",
            _values(j.select(F.col("identifier.value").alias("x")), "x"),
        ),  # MRN, SSN, licence, passport
        ("phone", _values(j.select(F.col("telecom.value").alias("x")), "x")),
        ("name", _values(names, "family", "given")),
        ("name pair", _pairs(names, F.col("given"), F.col("family"))),
        ("name pair", maiden),
        ("address", _values(j.select(F.flatten(F.col("address.line")).alias("x")), "x")),
    ]
    if encounter is not None:
        ids.append(("source id", _values(encounter, "id")))
    return ids


def omop_identifiers(person: DataFrame, visits: DataFrame | None = None) -> list[tuple[str, DataFrame]]:
    """bronze.omop_person's person_source_value (the source system's patient id) and the visits'
    visit_source_value (often the source encounter id)."""
    ids = [("source id", _values(person, "person_source_value"))]
    if visits is not None:
        ids.append(("source id", _values(visits, "visit_source_value")))
    return ids


def survey_identifiers(records: DataFrame, dictionary: DataFrame) -> list[tuple[str, DataFrame]]:
    """bronze.survey_records' direct identifiers: the values of the fields the data dictionaries
    (bronze.survey_dictionary) mark ``Identifier? = y``, of their free-text notes, and the record ids."""
    rows = dictionary.where((F.lower("identifier") == "y") | (F.lower("field_type") == "notes"))
    marked = rows.select("field_name", "field_type").distinct().collect()  # a few field names
    out = [("survey_record_id", _values(records, "record_id"))]
    for kind, ftype in (("survey_identifier", None), ("survey_note", "notes")):
        names = sorted({r[0] for r in marked if (r[1] == "notes") == (ftype == "notes")})
        if names:
            cols = records.select(*[F.col("raw_values")[n].alias(n) for n in names])
            out.append((kind, _values(cols, *names)))
    return out


def _scanned(field: T.StructField) -> bool:
    """Columns that can hold text: strings, and arrays, maps and structs (cast to text)."""
    return isinstance(field.dataType, T.StringType | T.ArrayType | T.MapType | T.StructType)


def scan(df: DataFrame, ids: DataFrame) -> Hits:
    """{(column, kind): number of identifier occurrences} in the text columns of df."""
    cols = [f.name for f in df.schema.fields if _scanned(f)]
    if not cols:
        return {}
    cells = df.select(
        F.explode(
            F.array(*[F.struct(F.lit(c).alias("column"), F.col(f"`{c}`").cast("string").alias("value")) for c in cols])
        ).alias("c")
    )
    toks = cells.select(F.col("c.column").alias("column"), tokens(F.col("c.value")).alias("t"))
    at = toks.select("column", "t", F.posexplode("t").alias("pos", "first"))
    hits = at.join(F.broadcast(ids), "first").where(
        F.array_join(F.slice("t", F.col("pos") + 1, F.col("n")), " ") == F.col("text")
    )
    return {(r["column"], r["kind"]): int(r["count"]) for r in hits.groupBy("column", "kind").count().collect()}


def scan_lake(
    lake: Lake, ids: DataFrame, layers: tuple[str, ...] = ("silver", "gold", "quarantine")
) -> dict[str, Hits]:
    """Every table of the given layers: {table: hits}, only tables with hits."""
    out = {}
    for name in lake.names():
        if name.split(".")[0] in layers:
            hits = scan(lake.read(name), ids)
            if hits:
                out[name] = hits
    return out


def kinds(ids: DataFrame) -> dict[str, int]:
    """How many distinct identifiers of each kind the scan looks for."""
    return {r["kind"]: int(r["count"]) for r in ids.groupBy("kind").count().collect()}
