"""Raw EHR files to bronze rows: every line kept, with its file and line number.

CSV (Synthea, OMOP) and NDJSON (FHIR bulk) are read as text lines, so that a line that does
not parse is kept whole instead of being dropped or silently shifted. Values stay strings;
typing happens in conform_ehr, where a value that does not parse is quarantined by name.

Line numbers come from the order Spark reads one file in (partitions of one file are its
byte ranges in order, rows within a partition in order): ``monotonically_increasing_id``
numbers rows within a partition, and one small count per partition gives the offsets.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

# A comma outside double quotes (RFC 4180 fields).
_FIELD_SPLIT = ',(?=(?:[^"]*"[^"]*")*[^"]*$)'


def numbered_lines(spark: SparkSession, path: Path) -> DataFrame:
    """(text, _line) for every line of one file, _line counting from 1."""
    raw = spark.read.text(str(path)).select(
        F.col("value").alias("text"), F.spark_partition_id().alias("_p"), F.monotonically_increasing_id().alias("_m")
    )
    counts = sorted((r[0], r[1]) for r in raw.groupBy("_p").count().collect())  # one row per partition
    offsets, total = {}, 0
    for p, n in counts:
        offsets[p] = total
        total += n
    within = F.col("_m") - F.shiftleft(F.col("_p").cast("long"), 33)
    if not offsets:  # an empty file: no rows (a map of no entries has no key type to look up)
        return raw.select("text", (within + 1).cast("long").alias("_line"))
    offset = F.create_map(*[x for p, o in offsets.items() for x in (F.lit(p), F.lit(o))])
    return raw.select("text", (within + F.coalesce(offset[F.col("_p")], F.lit(0)) + 1).cast("long").alias("_line"))


def csv_header(path: Path) -> list[str]:
    """The column names on the first line of a local CSV file (RFC 4180 quoting), read in plain Python;
    [] for an empty file."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        first = f.readline()
    return next(csv.reader(io.StringIO(first)), [])  # [] for an empty file


def parse_csv(lines: DataFrame, header: list[str], columns: list[str]) -> DataFrame:
    """Data lines (not the header) as the contract's columns, all strings.

    Header columns the contract does not know go to ``_rescued`` by name; a line whose field
    count differs from the header's is kept whole in ``_rescued['_malformed_line']`` with every
    column null (a shifted row would put values under the wrong names).
    """
    schema = T.StructType([T.StructField(f"c{i}", T.StringType()) for i in range(len(header))])
    data = lines.where(F.col("_line") > 1)
    n_fields = F.size(F.split("text", _FIELD_SPLIT))
    ok = n_fields == len(header)
    # RFC 4180: a quote inside a quoted field is written twice ("said ""no"""). Spark's default escape
    # character is a backslash, which left both quotes in the value.
    parsed = F.from_csv("text", schema.simpleString(), {"mode": "PERMISSIVE", "nullValue": "", "escape": '"'})
    data = data.select("text", "_line", ok.alias("_ok"), parsed.alias("_v"))
    idx = {h: i for i, h in enumerate(header)}
    cols: list[Column] = []
    for c in columns:
        value = F.col(f"_v.c{idx[c]}") if c in idx else F.lit(None).cast("string")
        cols.append(F.when(F.col("_ok"), value).alias(c))
    extra = [h for h in header if h not in columns]
    rescued_parts = [F.lit(h) for h in extra]
    extra_map = (
        F.map_from_arrays(F.array(*rescued_parts), F.array(*[F.col(f"_v.c{idx[h]}") for h in extra])) if extra else None
    )
    malformed = F.create_map(F.lit("_malformed_line"), F.col("text"))
    rescued = F.when(~F.col("_ok"), malformed)
    if extra_map is not None:
        rescued = rescued.otherwise(extra_map)
    return data.select(*cols, "_line", rescued.alias("_rescued"))


def parse_ndjson(lines: DataFrame, expected: str | None = None) -> DataFrame:
    """FHIR NDJSON lines: resourceType, id and subject reference pulled out, the JSON kept whole;
    a line that is not a JSON object, or (``expected`` given) a resource of another type than the
    file's (a Patient in Observation.ndjson), keeps resource_type null and goes to ``_rescued``
    (``_malformed_line``, and ``_reason`` for the other type)."""
    data = lines.where(F.length(F.trim("text")) > 0)
    parsed = F.from_json(
        "text", "resourceType string, id string, subject struct<reference:string>, patient struct<reference:string>"
    )
    data = data.select("text", "_line", parsed.alias("_j"))
    valid = F.col("_j").isNotNull() & F.col("_j.resourceType").isNotNull()
    reason = F.lit(None).cast("string")
    if expected:
        other = valid & (F.col("_j.resourceType") != F.lit(expected))
        reason = F.when(
            other, F.concat(F.lit("resourceType "), F.col("_j.resourceType"), F.lit(f" in a {expected} file"))
        )
        valid = valid & ~other
    rescued = F.when(
        ~valid,
        F.when(
            reason.isNotNull(),
            F.create_map(F.lit("_malformed_line"), F.col("text"), F.lit("_reason"), reason),
        ).otherwise(F.create_map(F.lit("_malformed_line"), F.col("text"))),
    )
    return data.select(
        F.when(valid, F.col("_j.resourceType")).alias("resource_type"),
        F.when(valid, F.col("_j.id")).alias("id"),
        F.when(valid, F.coalesce(F.col("_j.subject.reference"), F.col("_j.patient.reference"))).alias("subject_ref"),
        F.when(valid, F.col("text")).alias("resource"),
        "_line",
        rescued.alias("_rescued"),
    )
