"""ehr.silver.conform without a lake: bronze rows of two batches -> kept, quarantined, duplicates
(scenario folders tests/data/ehr_silver/<case>/, outcomes worked out by hand in their README)."""

from __future__ import annotations

import hmac
import json
from hashlib import sha256

import chispa
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scenario import folder, read_csv

from omicslake.contracts import load_contract
from omicslake.ehr import conform as C
from omicslake.ehr import silver
from omicslake.ehr.deid import pseudonym

KEY = b"unit-test-key-0123456789abcdef0123"


def _person_key(patient: str | None) -> str:
    """HMAC-SHA256 of 'person' + US + the id (a missing id as NUL), by Python's hmac."""
    return hmac.new(KEY, ("person\x1f" + (patient if patient is not None else "\x00")).encode(), sha256).hexdigest()


def test_sample_link_batches(spark: SparkSession) -> None:
    d = folder("ehr_silver", "sample_link_batches")
    bronze = read_csv(
        spark,
        d / "bronze.csv",
        "sample_id string, patient_id string, consent string, _source_file string, "
        "_line bigint, _batch_id string, malformed_line string",
    )
    bronze = bronze.withColumn(
        "_rescued",
        F.when(F.col("malformed_line").isNotNull(), F.create_map(F.lit("_malformed_line"), F.col("malformed_line"))),
    ).drop("malformed_line")
    ids = read_csv(spark, d / "person_ids.csv", "patient_id string")
    person = ids.select(
        pseudonym(KEY, "person", F.col("patient_id")).alias("person_key"),
        F.lit(None).cast("date").alias("birth_date"),
        F.lit(None).cast("date").alias("death_date"),
    )
    deid = C.Deid(KEY)
    contract = load_contract("silver.sample_link")

    c = silver.conform(bronze, lambda df: C.with_person(C.sample_link_rows(df, deid), person), contract, "run1")

    assert (c.n_read, c.n_built, c.n_duplicates, c.n_keys, c.n_kept, c.n_quarantined) == (5, 5, 1, 4, 2, 2)
    assert silver.batch_problems(c) == []
    assert c.checked.counts == {"well_formed": 1, "parseable": 0, "person_exists": 2}  # S4's unknown patient too
    exp = [
        r.asDict()
        for r in read_csv(
            spark,
            d / "expected_kept.csv",
            "sample_id string, patient_id string, consent boolean, _source_file string, _line bigint, _batch_id string",
        ).collect()
    ]
    expected = spark.createDataFrame(
        [
            (
                r["sample_id"],
                _person_key(r["patient_id"]),
                r["consent"],
                r["_source_file"],
                r["_line"],
                r["_batch_id"],
                "run1",
            )
            for r in exp
        ],
        "sample_id string, person_key string, consent boolean, _source_file string, _line bigint, "
        "_batch_id string, run_id string",
    )
    chispa.assert_df_equality(c.kept.drop("_row_hash"), expected, ignore_row_order=True, ignore_nullable=True)
    q = {r.row_key: r for r in c.quarantined.collect()}
    for want in read_csv(
        spark,
        d / "expected_quarantine.csv",
        "row_key string, rule string, reason string, source_file string, "
        "line bigint, patient_id string, consent boolean",
    ).collect():
        got = q.pop(want.row_key)
        assert (got.rule, got.reason, got.source_file, got.line, got.run_id) == (
            want.rule,
            want.reason,
            want.source_file,
            want.line,
            "run1",
        )
        assert json.loads(got.row_json) == {
            "sample_id": want.row_key,
            "person_key": _person_key(want.patient_id),
            "consent": want.consent,
        }
    assert q == {}
    # A rerun on the same rows changes nothing in silver: every kept row is in the table with its hash.
    assert silver.changed_rows(c.kept, c.kept, "sample_id").count() == 0
    c.release()


def test_reconciliation_identities_name_what_does_not_add_up() -> None:
    assert silver.write_problems("silver.t", "quarantine.t", 5, 5, 2, 2) == []
    assert silver.write_problems("silver.t", "quarantine.t", 5, 4, 2, 1) == [
        "5 rows kept but 4 rows with their keys in silver.t after the write",
        "2 rows quarantined but 1 of them in quarantine.t after the write",
    ]


def test_a_large_input_is_deduplicated_in_more_partitions_and_staged_with_the_same_outcome(
    spark: SparkSession, tmp_path
) -> None:
    """The de-duplication's partitions follow the input's rows (one per rows_per_partition, never fewer
    than the session's shuffle partitions); a large input's rows are written once by the stager and
    read from there; the outcome depends on neither."""
    d = folder("ehr_silver", "sample_link_batches")
    bronze = (
        read_csv(
            spark,
            d / "bronze.csv",
            "sample_id string, patient_id string, consent string, _source_file string, "
            "_line bigint, _batch_id string, malformed_line string",
        )
        .withColumn(
            "_rescued",
            F.when(
                F.col("malformed_line").isNotNull(), F.create_map(F.lit("_malformed_line"), F.col("malformed_line"))
            ),
        )
        .drop("malformed_line")
    )
    person = read_csv(spark, d / "person_ids.csv", "patient_id string").select(
        pseudonym(KEY, "person", F.col("patient_id")).alias("person_key"),
        F.lit(None).cast("date").alias("birth_date"),
        F.lit(None).cast("date").alias("death_date"),
    )
    deid = C.Deid(KEY)
    contract = load_contract("silver.sample_link")
    floor = int(spark.conf.get("spark.sql.shuffle.partitions"))
    assert silver.shuffle_partitions(spark, 5) == floor
    assert silver.shuffle_partitions(spark, 10 * floor + 1, 10) == floor + 1

    def build(df):
        return C.with_person(C.sample_link_rows(df, deid), person)

    staged: list[int] = []

    def stage(rows):
        rows.write.parquet(str(tmp_path / "staged"))
        staged.append(rows.rdd.getNumPartitions())
        return spark.read.parquet(str(tmp_path / "staged"))

    raw_ids = {r.patient_id for r in bronze.select("patient_id").collect() if r.patient_id}

    small = silver.conform(bronze, build, contract, "run1", stage=stage)
    assert staged == []  # a small input is cached, not staged
    wide = silver.conform(bronze, build, contract, "run1", rows_per_partition=1, stage=stage)  # 5 rows -> 5 parts
    assert staged == [max(floor, 5)]
    # no source id reaches the staged copy: its natural key is a hash, no column holds a raw patient id
    on_disk = spark.read.parquet(str(tmp_path / "staged"))
    assert all(len(r._nk) == 64 for r in on_disk.select("_nk").collect())
    leaked = [c for c in on_disk.columns if on_disk.where(F.col(c).cast("string").isin(list(raw_ids))).count()]
    assert leaked == [], leaked
    assert not any(i in r._nk for r in on_disk.select("_nk").collect() for i in raw_ids)
    assert small.kept.rdd.getNumPartitions() == floor
    counts = ("n_read", "n_built", "n_duplicates", "n_keys", "n_kept", "n_quarantined")
    assert [getattr(wide, n) for n in counts] == [getattr(small, n) for n in counts]
    chispa.assert_df_equality(wide.kept, small.kept, ignore_row_order=True, ignore_nullable=True)
    chispa.assert_df_equality(wide.quarantined, small.quarantined, ignore_row_order=True, ignore_nullable=True)
    small.release()
    wide.release()
