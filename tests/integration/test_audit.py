"""ops.runs: one row per job run, with the Delta versions read and written."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute


@pytest.fixture()
def cfg(cfg: Config) -> Config:
    """Ad-hoc tables without contracts: this module tests the lake itself."""
    return cfg.replace(**{"lake.enforce_contracts": False})


def copy_job(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, int]:
    src = lake.read("bronze.src")
    out = lake.write(src.withColumn("doubled", F.col("id") * 2), "silver.dst", mode="overwrite")
    return {"rows": out.rows}


def failing_job(spark: SparkSession, cfg: Config, lake: Lake) -> None:
    src = lake.read("bronze.src")
    # Fails inside the write, on the executors, as a bad row would.
    check = F.assert_true(F.col("id") > 100, "planted failure")
    bad = src.select("id", F.when(check.isNull(), F.col("id") * 3).alias("doubled"))
    lake.write(bad, "silver.dst", mode="overwrite")


def test_runs_row_has_versions_and_failure_leaves_output(spark: SparkSession, cfg: Config) -> None:
    seed = Lake(spark, cfg, run_id="seed")
    seed.write(spark.range(5), "bronze.src", mode="overwrite")
    seed.write(spark.range(10, 13), "bronze.src", mode="append")  # bronze.src is now at version 1

    ok = execute(spark, cfg, "copy", run_id="run-ok", fn=copy_job)
    assert ok.status == "succeeded"
    assert ok.inputs == (("bronze.src", 1),)
    assert [(w.table, w.version, w.rows) for w in ok.outputs] == [("silver.dst", 0, 8)]

    with pytest.raises(Exception, match="planted failure"):
        execute(spark, cfg, "broken", run_id="run-bad", fn=failing_job)
    lake = Lake(spark, cfg)
    assert lake.version("silver.dst") == 0  # the failed job left its output as it was
    assert sorted(r.id for r in lake.read("silver.dst").select("id").collect()) == [0, 1, 2, 3, 4, 10, 11, 12]

    runs = {r.job: r for r in lake.read("ops.runs").collect()}
    assert set(runs) == {"copy", "broken"}
    good, bad = runs["copy"], runs["broken"]
    assert (good.run_id, good.status, good.error, good.env) == ("run-ok", "succeeded", None, "local")
    assert [(i.table, i.version) for i in good.inputs] == [("bronze.src", 1)]
    assert [(o.table, o.version, o.rows, o.mode, o.skipped) for o in good.outputs] == [
        ("silver.dst", 0, 8, "overwrite", False)
    ]
    assert good.metrics == {"rows": "8"}  # values as JSON
    assert good.skip_key is None  # an ad-hoc job has no spec, so the pipeline never skips it
    assert good.config_hash == cfg.digest()
    assert good.ended_at >= good.started_at and good.seconds > 0
    assert bad.status == "failed" and "planted failure" in bad.error
    assert [(i.table, i.version) for i in bad.inputs] == [("bronze.src", 1)]
    assert list(bad.outputs) == []


def test_rerun_of_a_run_id_is_idempotent(spark: SparkSession, cfg: Config) -> None:
    Lake(spark, cfg, run_id="seed").write(spark.range(3), "bronze.src", mode="overwrite")
    execute(spark, cfg, "copy", run_id="same", fn=copy_job)
    again = execute(spark, cfg, "copy", run_id="same", fn=copy_job)
    assert [(w.version, w.skipped) for w in again.outputs] == [(0, True)]
    assert Lake(spark, cfg).read("ops.runs").count() == 2  # each attempt is audited


def _cache_manager_empty(spark: SparkSession) -> bool:
    return bool(spark._jsparkSession.sharedState().cacheManager().isEmpty())  # no public API for this


def test_a_jobs_cached_dataframes_do_not_outlive_it(spark: SparkSession, cfg: Config) -> None:
    """Cached blocks live in the driver's heap in local mode: a job that succeeds or fails leaves none."""

    def caching_job(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, int]:
        df = spark.range(1000).withColumn("x", F.col("id") * 2).cache()
        return {"rows": df.count()}

    def caching_then_failing(spark: SparkSession, cfg: Config, lake: Lake) -> None:
        spark.range(10).cache().count()
        raise ValueError("planted")

    spark.catalog.clearCache()
    probe = spark.range(3).cache()
    probe.count()
    assert not _cache_manager_empty(spark)  # the probe shows a cached frame where there is one
    spark.catalog.clearCache()
    assert execute(spark, cfg, "caching", run_id="c-ok", fn=caching_job).metrics == {"rows": 1000}
    assert _cache_manager_empty(spark)
    with pytest.raises(ValueError, match="planted"):
        execute(spark, cfg, "caching", run_id="c-bad", fn=caching_then_failing)
    assert _cache_manager_empty(spark)


def test_an_optional_input_that_appears_later_reruns_the_job(spark: SparkSession, cfg: Config) -> None:
    """psychometrics on a lake without surveys finds silver.survey_values absent and does nothing; it
    records the absence (version -1), so the pipeline skips it while the table stays absent and reruns
    it once the table exists (it used to skip it forever: a run that read no table)."""
    from omicslake.contracts import load_contract
    from omicslake.pipeline import skip_decision

    res = execute(spark, cfg, "psychometrics", run_id="no-survey")
    assert res.status == "succeeded" and ("silver.survey_values", -1) in res.inputs
    assert skip_decision(spark, cfg, "psychometrics").run is False
    empty = spark.createDataFrame([], load_contract("silver.survey_values").struct())
    Lake(spark, cfg, run_id="conform").write(empty, "silver.survey_values", mode="overwrite")
    d = skip_decision(spark, cfg, "psychometrics")
    assert d.run and "silver.survey_values exists now" in d.reason
