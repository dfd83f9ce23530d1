"""The pipeline's skip decision: it reruns exactly the jobs downstream of what changed (a config
value a job's spec declares, a file it read, a model version it loaded), and nothing else.

A copy of the session's whole-pipeline lake (tests/pipeline_lake.py) is the starting point; each
change is then checked against the dry-run prediction (``pipeline.predict``), and the cheap ones are run for real. The tests build on
each other in file order, as a user's successive runs would: a job reruns when its config differs
from its last successful run's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from lake_copy import copy_lake
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config, load_config
from omicslake.io.delta import Lake
from omicslake.jobs import downstream, pipeline_jobs, specs
from omicslake.pipeline import predict, run_pipeline
from pipeline_lake import PIPELINE_SETS

ALWAYS = {name for name, s in specs().items() if s.always_run}
DECIDED = [j for j in pipeline_jobs() if j not in ALWAYS]  # the jobs the skip decision is asked about


@pytest.fixture(scope="module")
def lake(pipeline: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the session's whole-pipeline lake (every job has run on it, through spark-submit),
    with the pipeline's own settings: this module changes its copy, never the original."""
    root = tmp_path_factory.mktemp("incremental")
    copy_lake(pipeline["lake"], root / "lake")
    cfg = load_config("local", overrides=[*PIPELINE_SETS, f"lake.root={root / 'lake'}"])
    return {"cfg": cfg, "root": root}


def _will_run(spark: SparkSession, cfg: Config) -> set[str]:
    return {job for job, d in predict(spark, cfg, pipeline_jobs()).items() if d.run} - ALWAYS


def _ran(results: list[Any]) -> set[str]:
    assert all(r.status in ("succeeded", "skipped") for r in results), [(r.job, r.status) for r in results]
    return {r.job for r in results if r.status == "succeeded"} - ALWAYS


def test_every_table_of_a_whole_pipeline_has_a_contract(spark: SparkSession, lake: dict[str, Any]) -> None:
    from omicslake.contracts import contract_path

    names = Lake(spark, lake["cfg"]).names()
    assert len(names) >= 40  # bronze, silver, gold, quarantine and ops of every job
    assert [n for n in names if contract_path(n) is None] == []


def test_nothing_changed_nothing_reruns(spark: SparkSession, lake: dict[str, Any]) -> None:
    cfg = lake["cfg"]
    assert _will_run(spark, cfg) == set()
    assert _ran(run_pipeline(spark, cfg, pipeline_jobs(), run_id="same")) == set()


# one table compacted, one Z-ordered (issue 20's budget: each table maintained is an OPTIMIZE, a VACUUM and
# reads of two versions; ops.ingested_files and bronze.synthea_observations were maintained here too)
MAINTAINED = ("silver.measurement", "gold.features_t2d_incident")


def test_maintain_compacts_and_vacuums_and_nothing_reruns(spark: SparkSession, lake: dict[str, Any]) -> None:
    """OPTIMIZE (Z-ordered for one table) and VACUUM within the 7-day retention: fewer files, the same rows
    in every version time travel reaches, and the next pipeline run still skips every job."""
    from omicslake.errors import ConfigError
    from omicslake.jobs.base import execute

    cfg = lake["cfg"].replace(
        **{
            "jobs.maintain.tables": MAINTAINED,
            "jobs.maintain.zorder": {"gold.features_t2d_incident": ("person_key",)},
        }
    )
    L = Lake(spark, cfg)
    before = {t: L.version(t) for t in MAINTAINED}
    rows_before = {t: L.read(t).count() for t in MAINTAINED}
    # refused before anything is touched: a retention under 7 days without force
    with pytest.raises(ConfigError, match="under 168"):
        execute(spark, cfg.replace(**{"jobs.maintain.retention_hours": 1.0}), "maintain", run_id="maint-refused")
    assert {t: L.version(t) for t in MAINTAINED} == before
    result = execute(spark, cfg, "maintain", run_id="maint")
    done = {r.table_name: r for r in L.read("ops.table_maintenance").where(F.col("run_id") == "maint").collect()}
    assert set(done) == set(MAINTAINED)
    assert done["gold.features_t2d_incident"].optimized == "zorder"
    assert done["gold.features_t2d_incident"].zorder_by == ["person_key"]
    compacted = [t for t, r in done.items() if r.optimized == "compacted"]
    assert compacted and all(done[t].files_after < done[t].files_before for t in compacted)
    assert result.metrics["files_after"] < result.metrics["files_before"]
    for t in MAINTAINED:
        assert L.read(t).count() == rows_before[t]  # counted after the write, not derived
        old = L.read(t, version=before[t])  # time travel inside the retention still works
        assert old.count() == rows_before[t]
        assert L.data_changed(t, before[t]) is False
    # OPTIMIZE and VACUUM commits change no row: nothing downstream reruns
    assert _will_run(spark, cfg) == set()


def test_a_new_champion_version_is_scored_and_nothing_else_runs(spark: SparkSession, lake: dict[str, Any]) -> None:
    import mlflow

    from omicslake.ml.tracking import setup

    cfg = lake["cfg"]
    setup(cfg)
    client = mlflow.MlflowClient()
    name = "omicslake_t2d_incident_logistic"
    champion = client.get_model_version_by_alias(name, "champion")
    new = client.create_model_version(name, champion.source, run_id=champion.run_id)
    client.set_registered_model_alias(name, "champion", new.version)
    assert _will_run(spark, cfg) == {"score"}
    # without the always-run jobs (ingests, report): test_nothing_changed_nothing_reruns runs them whole
    results = {r.job: r for r in run_pipeline(spark, cfg, DECIDED, run_id="champion")}
    assert _ran(list(results.values())) == {"score"}
    assert results["score"].metrics["model_version"] == int(new.version)
    scored = Lake(spark, cfg).read(f"gold.predictions_{name}").where(F.col("model_version") == int(new.version))
    assert scored.count() == Lake(spark, cfg).read("gold.features_t2d_incident").count()


def test_another_model_type_retrains_and_scores_with_the_new_model(spark: SparkSession, lake: dict[str, Any]) -> None:
    """First with a failure injected in train (no feature column matches): the whole pipeline stops at
    train with the unchanged steps skipped; then, fixed, the rerun resumes at train and scores."""
    from omicslake.errors import InputError

    cfg = lake["cfg"].replace(**{"jobs.train.model": "gbt", "jobs.train.grid": {"maxDepth": [2], "maxIter": [5]}})
    assert _will_run(spark, cfg) == {"train", "score"}
    broken = cfg.replace(**{"jobs.train.include": ["no_such_feature_*"]})
    with pytest.raises(InputError, match="no feature columns"):
        run_pipeline(spark, broken, pipeline_jobs(), run_id="gbt-broken")
    first = {r.job: r.status for r in Lake(spark, cfg).read("ops.runs").where("run_id = 'gbt-broken'").collect()}
    jobs = pipeline_jobs()
    # the always-run ingests ran (committing nothing new), every other step before train was skipped
    assert first == {**{j: "succeeded" for j in jobs[: jobs.index("train")] if j in ALWAYS}, "train": "failed"}, first
    results = {r.job: r for r in run_pipeline(spark, cfg, DECIDED, run_id="gbt")}
    assert _ran(list(results.values())) == {"train", "score"}
    name = "omicslake_t2d_incident_gbt"
    assert results["score"].metrics["model"] == name
    preds = Lake(spark, cfg).read(f"gold.predictions_{name}")
    assert {r.model_version for r in preds.select("model_version").distinct().collect()} == {
        results["score"].metrics["model_version"]
    }
    # and the next run with the same settings skips both
    assert _will_run(spark, cfg) == set()


def test_an_edited_prs_weights_file_reruns_what_reads_the_prs(spark: SparkSession, lake: dict[str, Any]) -> None:
    cfg = lake["cfg"]
    weights = Path(cfg.lake_root) / "landing" / "prs" / "t2d_weights.tsv"
    lines = weights.read_text().splitlines()
    fields = lines[1].split("\t")
    fields[-1] = str(float(fields[-1]) + 0.5)
    weights.write_text("\n".join([lines[0], "\t".join(fields), *lines[2:]]) + "\n")
    assert _will_run(spark, cfg) == downstream({"genetic_features"}) - ALWAYS


def test_a_changed_qc_threshold_reruns_genomic_qc_and_what_follows(spark: SparkSession, lake: dict[str, Any]) -> None:
    cfg = lake["cfg"].replace(**{"jobs.genomic_qc.variant_min_call_rate": 0.9})
    assert _will_run(spark, cfg) == downstream({"genomic_qc"}) - ALWAYS
    assert downstream({"genomic_qc"}) - ALWAYS == {
        "genomic_qc",
        "genetic_features",
        "build_cohort",
        "omics_assoc",
        "gwas",
        "train",
        "score",
        "cluster",
        "survival",
        "study",
    }


def test_a_copied_lake_is_the_same_lake(spark: SparkSession, lake: dict[str, Any]) -> None:
    """The skip key holds no absolute root, and files under the root are recorded relative to it."""
    cfg = lake["cfg"]
    copy = Path(lake["root"]) / "copy"
    shutil.copytree(cfg.lake_root, copy)
    moved = cfg.replace(**{"lake.root": str(copy)})
    # the PRS file was edited by the test before (if it ran): both lakes then rerun the same jobs
    assert _will_run(spark, moved) == _will_run(spark, cfg)
