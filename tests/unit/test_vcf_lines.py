"""genomics.vcf.match_lines and quarantine_rows without Hail or a lake: which line each bronze
row came from, which text records Hail skipped (tests/data/vcf_lines/<case>/)."""

from __future__ import annotations

import json

import chispa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scenario import folder, read_csv

from omicslake.genomics import vcf


def _alts(df: DataFrame) -> DataFrame:
    """alts written A|C; an empty field is an empty array (ALT '.')."""
    return df.withColumn(
        "alts", F.when(F.col("alts").isNull(), F.array().cast("array<string>")).otherwise(F.split("alts", r"\|"))
    )


def test_shared_site_and_skipped(spark: SparkSession) -> None:
    d = folder("vcf_lines", "shared_site_and_skipped")
    text = _alts(read_csv(spark, d / "text.csv", "contig string, position int, ref string, alts string, line bigint"))
    rows = _alts(
        read_csv(
            spark,
            d / "rows.csv",
            "contig string, position int, ref string, alts string, qual double, _invalid_rule string",
        )
    )
    rows_ddl = "contig string, position int, ref string, alts string, qual double, _invalid_rule string, line bigint"
    expected_rows = _alts(read_csv(spark, d / "expected_rows.csv", rows_ddl))
    expected_unclaimed = _alts(
        read_csv(
            spark, d / "expected_unclaimed.csv", "contig string, position int, ref string, alts string, line bigint"
        )
    )

    located, unclaimed = vcf.match_lines(text, rows, {"1": "chr1", "2": "chr2"})

    chispa.assert_df_equality(located, expected_rows, ignore_row_order=True, ignore_nullable=True)
    chispa.assert_df_equality(unclaimed, expected_unclaimed, ignore_row_order=True, ignore_nullable=True)
    # Without the recoding no text record matches a row: every row loses its line, every record is unclaimed.
    none, all_text = vcf.match_lines(text, rows)
    assert none.where("line IS NOT NULL").count() == 0 and all_text.count() == 6

    # The quarantine rows: the flagged ones with their lines, the skipped one as unparsed_record.
    flagged = located.where("_invalid_rule IS NOT NULL").withColumn("_invalid_reason", F.lit("why"))
    q = vcf.quarantine_rows(flagged, unclaimed, "/in/x.vcf", "abc123", "run1").collect()
    assert sorted((r.row_key, r.rule, r.line) for r in q) == [
        ("chr1:200:C:T", "qual_negative", 8),
        ("chr1:200:C:T", "qual_negative", 9),
        ("chr1:300:G:A,C", "too_many_alleles", 10),
        ("chr1:400:Q:T", "unparsed_record", 11),
    ]
    assert {(r.source_file, r.file_sha256, r.run_id) for r in q} == {("/in/x.vcf", "abc123", "run1")}
    assert json.loads(next(r.row_json for r in q if r.line == 8)) == {
        "contig": "chr1",
        "position": 200,
        "ref": "C",
        "alts": ["T"],
        "qual": -1.0,
    }
