"""Lake I/O on real Delta tables: names, write modes, idempotent reruns, pinned reads."""

from __future__ import annotations

import chispa
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from omicslake.config import Config
from omicslake.errors import IdentifierError, TableNotFoundError
from omicslake.io.delta import Lake, check_identifier


@pytest.fixture()
def cfg(cfg: Config) -> Config:
    """Ad-hoc tables without contracts: this module tests the lake itself."""
    return cfg.replace(**{"lake.enforce_contracts": False})


SCHEMA = T.StructType([T.StructField("id", T.LongType(), False), T.StructField("v", T.StringType(), True)])


def df(spark: SparkSession, rows: list[tuple[int, str]]):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(rows, SCHEMA)


def test_append_then_rerun_of_same_run_writes_nothing(spark: SparkSession, cfg: Config) -> None:
    lake = Lake(spark, cfg, run_id="r1")
    first = lake.write(df(spark, [(1, "a"), (2, "b")]), "bronze.t", mode="append")
    assert (first.version, first.rows, first.skipped) == (0, 2, False)
    # The same run again (a retry after a crash): same txnAppId and txnVersion -> skipped.
    again = Lake(spark, cfg, run_id="r1").write(df(spark, [(1, "a"), (2, "b")]), "bronze.t", mode="append")
    assert (again.version, again.rows, again.skipped) == (0, 0, True)
    # A new run appends.
    other = Lake(spark, cfg, run_id="r2").write(df(spark, [(3, "c")]), "bronze.t", mode="append")
    assert (other.version, other.rows) == (1, 1)
    chispa.assert_df_equality(
        lake.read("bronze.t"), df(spark, [(1, "a"), (2, "b"), (3, "c")]), ignore_row_order=True, ignore_nullable=True
    )


def test_overwrite_replaces_and_is_idempotent(spark: SparkSession, cfg: Config) -> None:
    Lake(spark, cfg, run_id="a").write(df(spark, [(1, "a"), (2, "b")]), "silver.t", mode="overwrite")
    w = Lake(spark, cfg, run_id="b").write(df(spark, [(9, "z")]), "silver.t", mode="overwrite")
    assert (w.version, w.rows) == (1, 1)
    w2 = Lake(spark, cfg, run_id="b").write(df(spark, [(8, "y")]), "silver.t", mode="overwrite")
    assert (w2.version, w2.skipped) == (1, True)
    chispa.assert_df_equality(
        Lake(spark, cfg).read("silver.t"), df(spark, [(9, "z")]), ignore_row_order=True, ignore_nullable=True
    )


def test_merge_on_keys_updates_and_inserts_and_is_idempotent(spark: SparkSession, cfg: Config) -> None:
    Lake(spark, cfg, run_id="m1").write(df(spark, [(1, "a"), (2, "b")]), "silver.m", mode="merge", keys=["id"])
    lake = Lake(spark, cfg, run_id="m2")
    w = lake.write(df(spark, [(2, "B"), (3, "c")]), "silver.m", mode="merge", keys=["id"])
    assert (w.version, w.rows) == (1, 2)  # one updated, one inserted
    expected = df(spark, [(1, "a"), (2, "B"), (3, "c")])
    chispa.assert_df_equality(lake.read("silver.m"), expected, ignore_row_order=True, ignore_nullable=True)
    rerun = Lake(spark, cfg, run_id="m2").write(df(spark, [(2, "X")]), "silver.m", mode="merge", keys=["id"])
    assert (rerun.version, rerun.skipped) == (1, True)
    chispa.assert_df_equality(lake.read("silver.m"), expected, ignore_row_order=True, ignore_nullable=True)
    # The session confs used for the idempotent MERGE do not leak into later writes.
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None
    # History stays reachable: version 0 is the first load.
    chispa.assert_df_equality(
        lake.read("silver.m", version=0), df(spark, [(1, "a"), (2, "b")]), ignore_row_order=True, ignore_nullable=True
    )


def test_second_write_in_one_run_is_not_mistaken_for_a_rerun(spark: SparkSession, cfg: Config) -> None:
    lake = Lake(spark, cfg, run_id="same")
    lake.write(df(spark, [(1, "a")]), "quarantine.q", mode="append")
    w = lake.write(df(spark, [(2, "b")]), "quarantine.q", mode="append")
    assert (w.version, w.rows, w.skipped) == (1, 1, False)


def test_read_pins_and_records_version(spark: SparkSession, cfg: Config) -> None:
    Lake(spark, cfg, run_id="x").write(df(spark, [(1, "a")]), "gold.p", mode="append")
    Lake(spark, cfg, run_id="y").write(df(spark, [(2, "b")]), "gold.p", mode="append")
    lake = Lake(spark, cfg, run_id="reader")
    pinned = lake.read("gold.p")
    assert lake.reads == {"gold.p": 1}
    Lake(spark, cfg, run_id="z").write(df(spark, [(3, "c")]), "gold.p", mode="append")
    assert pinned.count() == 2  # a commit after the read does not leak in


def test_tables_lists_versions_and_counts(spark: SparkSession, cfg: Config) -> None:
    Lake(spark, cfg, run_id="t1").write(df(spark, [(1, "a"), (2, "b")]), "bronze.one", mode="append")
    Lake(spark, cfg, run_id="t2").write(df(spark, [(1, "a")]), "gold.two", mode="append")
    Lake(spark, cfg, run_id="t3").write(df(spark, [(5, "e")]), "gold.two", mode="append")
    assert Lake(spark, cfg).tables() == [("bronze.one", 0, 2), ("gold.two", 1, 2)]


def test_unknown_table_is_a_clear_error(spark: SparkSession, cfg: Config) -> None:
    lake = Lake(spark, cfg)
    with pytest.raises(TableNotFoundError, match=r"table silver\.nope does not exist .*run the job that writes it"):
        lake.read("silver.nope")
    with pytest.raises(TableNotFoundError, match=r"unknown layer 'platinum'"):
        lake.read("platinum.x")
    with pytest.raises(TableNotFoundError, match=r"must be <layer>.<table>"):
        lake.read("justaname")


@pytest.mark.parametrize(
    "name",
    ["x; DROP TABLE person", "a b", "1abc", "t`x", "name--", "", "ä"],
)
def test_identifiers_with_sql_are_refused(spark: SparkSession, cfg: Config, name: str) -> None:
    with pytest.raises(IdentifierError, match="not a plain identifier"):
        check_identifier(name)
    with pytest.raises((IdentifierError, TableNotFoundError)):
        Lake(spark, cfg).path(f"silver.{name}")


def test_merge_keys_are_validated_before_sql(spark: SparkSession, cfg: Config) -> None:
    with pytest.raises(IdentifierError, match="column for silver.k"):
        Lake(spark, cfg).write(df(spark, [(1, "a")]), "silver.k", mode="merge", keys=["id) OR (1=1"])
    assert not Lake(spark, cfg).exists("silver.k")


def test_catalog_mode_maps_layers_to_schemas(spark: SparkSession, cfg: Config) -> None:
    uc = cfg.replace(**{"lake.catalog": "main", "lake.schemas": {"gold": "research_gold"}})
    lake = Lake(spark, uc)
    assert lake.qualified("gold.cohort_t2d") == "`main`.`research_gold`.`cohort_t2d`"
    assert lake.qualified("bronze.x") == "`main`.`bronze`.`x`"
    bad = cfg.replace(**{"lake.catalog": "main; drop"})
    with pytest.raises(IdentifierError, match="lake.catalog"):
        Lake(spark, bad).qualified("gold.x")


def test_a_column_the_contract_does_not_declare_fails_the_write(
    spark: SparkSession, base_cfg: Config, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from omicslake.errors import ContractError

    cfg = base_cfg.replace(**{"lake.root": str(tmp_path / "lake")})  # contracts enforced (the default)
    lake = Lake(spark, cfg, run_id="c1")
    gen = spark.createDataFrame([("k1", 0.5, 1)], "sample_id string, pc1 double, pc2 int")
    with pytest.raises(
        ContractError,
        match=r"gold\.genetic_pcs: column pc2 is int, the contract says double \(pattern pc\[0-9\]\*\).*"
        r"column\(s\) \['run_id'\] missing",
    ):
        lake.write(gen, "gold.genetic_pcs", mode="overwrite")
    ssn = spark.createDataFrame([("k1", "123-45-6789", "r")], "sample_id string, ssn string, run_id string")
    with pytest.raises(
        ContractError,
        match=r"gold\.genetic_pcs: column ssn \(string\) is not in the contract .*schemas/gold/genetic_pcs\.yaml",
    ):
        lake.write(ssn, "gold.genetic_pcs", mode="overwrite")
    with pytest.raises(ContractError, match=r"no contract for gold\.nowhere"):
        lake.write(ssn, "gold.nowhere", mode="overwrite")
    assert not lake.exists("gold.genetic_pcs") and not lake.exists("gold.nowhere")  # nothing written
    ok = spark.createDataFrame([("k1", 0.5, 0.1, "r")], "sample_id string, pc1 double, pc2 double, run_id string")
    assert lake.write(ok, "gold.genetic_pcs", mode="overwrite").rows == 1
    feats = spark.createDataFrame([("p", "x")], "person_key string, lab_hba1c_last_365d string")
    with pytest.raises(
        ContractError,
        match=r"gold\.features_any_cohort: column lab_hba1c_last_365d is string, the contract says "
        r"double \(pattern lab_\*\).*features_\{cohort\}\.yaml",
    ):
        lake.write(feats, "gold.features_any_cohort", mode="overwrite")


def test_existence_is_deltas_answer_not_a_folder(spark: SparkSession, cfg: Config) -> None:
    """A table is a committed Delta version: not an empty _delta_log left by a failed first write,
    not a folder of parquet, not a table whose folder was deleted after it was read."""
    import shutil

    lake = Lake(spark, cfg, run_id="e")
    root = cfg.lake_root
    (root / "silver" / "half" / "_delta_log").mkdir(parents=True)
    spark.createDataFrame([(1,)], "id long").write.parquet(str(root / "silver" / "plain"))
    lake.write(df(spark, [(1, "a")]), "silver.real")
    assert lake.exists("silver.real") and lake.version("silver.real") == 0
    assert not lake.exists("silver.half") and not lake.exists("silver.plain") and not lake.exists("silver.none")
    assert lake.names() == ["silver.real"]
    assert lake.location("silver.real") == str(root / "silver" / "real") == str(lake.path("silver.real"))
    shutil.rmtree(root / "silver" / "real")
    assert not lake.exists("silver.real") and lake.names() == []


def test_versions_and_commit_metrics_from_the_log_equal_deltas_history(spark: SparkSession, cfg: Config) -> None:
    """Lake.version and the rows of a write are read from the _delta_log files (no Spark job); after
    appends, a merge, an overwrite, a restore and an OPTIMIZE (with a checkpoint on the way: every
    10th commit) they equal what Delta's own history says."""
    from delta.tables import DeltaTable

    lake = Lake(spark, cfg, run_id="v")
    assert lake.version("silver.h") is None
    for i in range(11):
        lake.write(df(spark, [(i, "a"), (100 + i, "b")]), "silver.h", mode="append")
    lake.write(df(spark, [(1, "B"), (500, "c")]), "silver.h", mode="merge", keys=["id"])
    w = lake.write(df(spark, [(7, "x")]), "silver.h", mode="overwrite")
    assert (w.version, w.rows) == (12, 1)
    lake.restore("silver.h", 11)
    DeltaTable.forPath(spark, lake.location("silver.h")).optimize().executeCompaction()
    history = DeltaTable.forPath(spark, lake.location("silver.h")).history().orderBy("version").collect()
    assert any(p.name.endswith(".checkpoint.parquet") for p in (lake.path("silver.h") / "_delta_log").iterdir())
    assert lake.version("silver.h") == history[-1].version == 14
    assert lake._last_commit("silver.h") == (14, dict(history[-1].operationMetrics))
    merge = history[11]
    assert merge.operation == "MERGE" and int(merge.operationMetrics["numTargetRowsUpdated"]) == 1


def test_undo_on_error_puts_every_table_back_and_keeps_the_error(spark: SparkSession, cfg: Config) -> None:
    lake = Lake(spark, cfg, run_id="r1")
    lake.write(df(spark, [(1, "a")]), "gold.kept", mode="overwrite")
    lake.write(df(spark, [(1, "a"), (2, "b")]), "gold.grown", mode="append")
    lake.write(df(spark, [(3, "c")]), "gold.grown", mode="append")  # version 1
    tables = ["gold.kept", "gold.grown", "gold.new", "gold.untouched"]
    run = Lake(spark, cfg, run_id="r2")
    with pytest.raises(ValueError, match="boom"), run.undo_on_error(tables) as before:
        assert before == {"gold.kept": 0, "gold.grown": 1, "gold.new": None, "gold.untouched": None}
        run.write(df(spark, [(9, "z")]), "gold.kept", mode="overwrite")
        run.write(df(spark, [(4, "d")]), "gold.grown", mode="append")
        run.write(df(spark, [(5, "e")]), "gold.new", mode="overwrite")
        raise ValueError("boom")
    chispa.assert_df_equality(lake.read("gold.kept"), df(spark, [(1, "a")]), ignore_nullable=True)
    chispa.assert_df_equality(
        lake.read("gold.grown"), df(spark, [(1, "a"), (2, "b"), (3, "c")]), ignore_row_order=True, ignore_nullable=True
    )
    assert (lake.version("gold.kept"), lake.version("gold.grown")) == (2, 3)  # a RESTORE commit each
    assert lake.read("gold.new").count() == 0  # created in the block: emptied
    assert not lake.exists("gold.untouched")
    # a block that ends well keeps its writes
    with run.undo_on_error(["gold.kept"]):
        run.write(df(spark, [(7, "g")]), "gold.kept", mode="overwrite")
    chispa.assert_df_equality(lake.read("gold.kept"), df(spark, [(7, "g")]), ignore_nullable=True)


def test_compare_and_set_updates_only_the_row_it_saw_and_keeps_the_contract(spark: SparkSession, cfg: Config) -> None:
    """The lease's write: a matched row changes only where the condition on it holds, a new key is
    inserted, and a column the contract does not declare fails before anything is written."""
    from pyspark.sql import functions as F

    from omicslake.errors import ContractError

    lake = Lake(spark, cfg.replace(**{"lake.enforce_contracts": True}), run_id="r1")
    cols = "lease string, run_id string, host string, pid bigint, acquired_at timestamp, expires_at timestamp"
    row = spark.createDataFrame([("pipeline", "a", "h", 1, None, None)], cols)
    lake.write(row, "ops.pipeline_lease", mode="append")
    take = spark.createDataFrame([("pipeline", "b", "h", 2, None, None)], cols)
    lake.compare_and_set(take, "ops.pipeline_lease", "lease", F.col("t.run_id") == "z")  # not what is there
    assert [r.run_id for r in lake.read("ops.pipeline_lease").collect()] == ["a"]
    lake.compare_and_set(take, "ops.pipeline_lease", "lease", F.col("t.run_id") == "a")
    other = spark.createDataFrame([("other", "c", "h", 3, None, None)], cols)
    lake.compare_and_set(other, "ops.pipeline_lease", "lease", F.lit(False))  # no match: inserted
    got = {r.lease: (r.run_id, r.pid) for r in lake.read("ops.pipeline_lease").collect()}
    assert got == {"pipeline": ("b", 2), "other": ("c", 3)}
    version = lake.version("ops.pipeline_lease")
    extra = take.withColumn("note", F.lit("x"))
    with pytest.raises(ContractError, match=r"ops\.pipeline_lease: column note \(string\) is not in the contract"):
        lake.compare_and_set(extra, "ops.pipeline_lease", "lease", F.lit(True))
    assert lake.version("ops.pipeline_lease") == version
