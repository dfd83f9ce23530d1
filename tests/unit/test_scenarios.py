"""Scenario folders: tiny hand-made inputs next to the output worked out by hand.

Each case is a folder ``tests/data/<feature>/<case>/`` holding ``input.*`` (as a lab or an EHR
vendor would deliver it) and ``expected.json`` (written by hand from the format's specification,
never produced by our code). Adding a case is adding a folder.

- ``vcf_header``: ``genomics.vcf.sniff`` and ``check_header`` (container, sample ids, INFO/FORMAT
  declarations, or the error naming the line and what is wrong).
- ``csv_parse``: ``ehr.bronze.numbered_lines`` + ``parse_csv`` (RFC 4180 quoting, doubled quotes,
  empty fields as null, columns the contract does not know rescued by name, a line with the wrong
  number of fields kept whole).
- ``fhir_shapes``: FHIR R4 NDJSON through ``ehr.bronze.parse_ndjson`` and the ``ehr.fhir`` shape
  of each resource into the Synthea columns conform reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

DATA = Path(__file__).resolve().parents[1] / "data"


def _cases(feature: str) -> list[Path]:
    cases = sorted(p for p in (DATA / feature).iterdir() if p.is_dir())
    assert cases, f"no scenario folders under {DATA / feature}"
    return cases


def _expected(case: Path) -> dict[str, Any]:
    return json.loads((case / "expected.json").read_text())  # type: ignore[no-any-return]


def _input(case: Path) -> Path:
    (path,) = case.glob("input.*")
    return path


@pytest.mark.parametrize("case", _cases("vcf_header"), ids=lambda p: p.name)
def test_vcf_header(case: Path) -> None:
    from omicslake.errors import InputError
    from omicslake.genomics.vcf import check_header, sniff

    want = _expected(case)
    path = _input(case)
    kind = sniff(path)
    if "error" in want:
        with pytest.raises(InputError) as err:
            check_header(path, kind)
        assert str(err.value).startswith(f"{path}: "), str(err.value)  # the file is named first
        assert want["error"] in str(err.value)
        return
    assert kind == want["kind"]
    header = check_header(path, kind)
    assert header.samples == want["samples"]
    assert header.info == {k: tuple(v) for k, v in want["info"].items()}
    assert header.fmt == {k: tuple(v) for k, v in want["fmt"].items()}
    assert header.lines == want["lines"]


@pytest.mark.parametrize("case", _cases("csv_parse"), ids=lambda p: p.name)
def test_csv_parse(spark: SparkSession, case: Path) -> None:
    from omicslake.ehr.bronze import csv_header, numbered_lines, parse_csv

    want = _expected(case)
    path = _input(case)
    columns: list[str] = want["columns"]
    got = parse_csv(numbered_lines(spark, path), csv_header(path), columns)
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in columns]
        + [T.StructField("_line", T.LongType()), T.StructField("_rescued", T.MapType(T.StringType(), T.StringType()))]
    )
    expected = spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in want["rows"]], schema)
    # maps cannot be sorted for the row-order-free comparison: compare them as JSON text
    as_text = [*columns, "_line", F.to_json("_rescued").alias("_rescued")]
    assert_df_equality(got.select(*as_text), expected.select(*as_text), ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("case", _cases("fhir_shapes"), ids=lambda p: p.name)
def test_fhir_shapes(spark: SparkSession, case: Path) -> None:
    from omicslake.ehr import fhir
    from omicslake.ehr.bronze import numbered_lines, parse_ndjson

    want = _expected(case)
    path = _input(case)
    table, shape, needs = fhir.AS_SYNTHEA[want["shape"]]
    assert table == want["table"] and needs == ()
    bronze = parse_ndjson(numbered_lines(spark, path)).select(
        "*",
        F.lit(path.name).alias("_source_file"),
        F.lit("0" * 64).alias("_file_sha256"),
        F.lit("b1").alias("_batch_id"),
        F.lit("r1").alias("_run_id"),
        F.current_timestamp().alias("_ingested_at"),
    )
    got = shape(bronze)
    # the provenance columns pass through untouched, and every line is one row
    assert sorted(r._line for r in got.select("_line").collect()) == list(range(1, len(want["rows"]) + 1))
    columns = list(want["rows"][0])
    schema = T.StructType([T.StructField(c, T.StringType()) for c in columns])
    expected = spark.createDataFrame([tuple(r[c] for c in columns) for r in want["rows"]], schema)
    assert_df_equality(got.select(*columns), expected, ignore_row_order=True, ignore_nullable=True)
