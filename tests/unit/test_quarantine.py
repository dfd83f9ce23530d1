"""One quarantine shape and one de-duplication rule (omicslake.quarantine), without a lake."""

from __future__ import annotations

from pathlib import Path

import chispa
import yaml
from pyspark.sql import SparkSession
from scenario import folder, read_csv

from omicslake import quarantine
from omicslake.contracts import load_contract

REPO = Path(__file__).resolve().parents[2]
SHAPE_DDL = (
    "row_key string, rule string, reason string, row_json string, source_file string, line bigint, run_id string"
)


def test_every_quarantine_table_has_the_one_shape_and_key() -> None:
    tables = sorted(p.stem for p in (REPO / "schemas" / "quarantine").glob("*.yaml"))
    assert {"person", "measurement", "vcf_variants", "sample_qc", "variant_qc"} <= set(tables)
    for t in tables:
        c = load_contract(f"quarantine.{t}")
        assert [(x.name, x.type) for x in c.columns[: len(quarantine.SHAPE)]] == [
            ("row_key", "string"),
            ("rule", "string"),
            ("reason", "string"),
            ("row_json", "string"),
            ("source_file", "string"),
            ("line", "bigint"),
            ("run_id", "string"),
        ], t
        assert c.keys == quarantine.DEDUP_KEY, t
        extra = c.names[len(quarantine.SHAPE) :]
        assert extra == (["file_sha256"] if t == "vcf_variants" else []), t  # only what a process needs
    raw = yaml.safe_load((REPO / "schemas" / "quarantine" / "person.yaml").read_text())
    assert raw["table"] == "quarantine.person"


def test_a_rerun_adds_nothing_and_a_new_occurrence_is_added(spark: SparkSession) -> None:
    d = folder("quarantine", "rerun")
    existing = read_csv(spark, d / "existing.csv", SHAPE_DDL)
    batch = read_csv(spark, d / "batch.csv", SHAPE_DDL)
    expected = read_csv(spark, d / "expected_new.csv", SHAPE_DDL)
    chispa.assert_df_equality(quarantine.new_rows(batch, existing), expected, ignore_row_order=True)
    # The first write of a table keeps one row per key; writing them again adds nothing.
    first = quarantine.new_rows(batch, None)
    assert first.count() == 5
    assert quarantine.new_rows(batch, first).count() == 0


def test_rows_builds_the_shape_from_a_checked_frame(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("k1", 3.5, "f.csv", 7, "too_high", "value above 3")],
        "key string, value double, file string, ln int, rule string, reason string",
    )
    out = quarantine.rows(df, "key", ["key", "value"], "file", "ln", "run9")
    expected = spark.createDataFrame(
        [("k1", "too_high", "value above 3", '{"key":"k1","value":3.5}', "f.csv", 7, "run9")], SHAPE_DDL
    )
    chispa.assert_df_equality(out, expected, ignore_nullable=True)
