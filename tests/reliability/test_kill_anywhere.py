"""Kill anywhere (issue 15): a job SIGKILLed before, during or right after a Delta commit, then rerun,
leaves the lake as a clean run leaves it: the same rows, no duplicates, no partial table, and
``ops.runs`` says the killed attempt was interrupted.

The kills are deterministic: ``omicslake.io.faults`` kills the attempt's whole process group at a
named point of the commit path (``before commit <table> (<job>)``, ``during commit ...`` when the
write's first data file appears, ``after commit ...``), never after a sleep. Each attempt is a real
``omicslake pipeline`` process with a new run id, as the next scheduled run after a crash would be;
it starts where the killed one left the lake, so the attempts form a chain: attempt k meets the
states of the kills before it. The last attempt runs to the end, and every table of bronze, silver,
gold and quarantine is compared with the tables of a clean run on the same input (EXCEPT ALL both
ways, after dropping the columns that hold a run id or the wall clock).

CI kills at the 7 points of ``KILLS``, at least one per job: the state each job's kill found a bug in
or is most likely to get wrong (bronze rows of files the ledger does not list yet, files recorded
without an audit row, a half-written table in conform_ehr and in ingest_vcf, a cohort build with
every table and no audit row, a train whose alias moved to its own version, a score between its
predictions and its page). About 45 s an attempt on two quiet cores; the suite's budget (issue 20)
set the count, which was 12 (two per job) until the suite had to fit in 20 minutes.
``OMICSLAKE_KILL_MATRIX=full`` kills at every point of the clean run of those jobs instead (each
table's before, during and after, and train's and score's points between: 124 attempts, hours),
``OMICSLAKE_KILL_MATRIX=10`` at 10 of each job's points spread from its first to its last, all of
them for a job that has fewer (56 attempts: train and score have 8 each; about an hour here),
``OMICSLAKE_KILL_POINTS=a|b`` at the points named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lake_copy import multiset_diff
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.pipeline import run_pipeline
from small_lake import CLEAN_JOBS, JOBS

MODEL = "omicslake_t2d_incident_logistic"  # what train registers and score scores
KILLS = [  # in the order the pipeline reaches them: each attempt resumes where the last was killed
    "after commit bronze.synthea_conditions (ingest_ehr)",  # bronze rows of files the ledger does not list yet
    "after commit ops.ingested_files (ingest_ehr)",  # the files are recorded, the audit row is not
    "during commit silver.measurement (conform_ehr)",  # a table half written
    "during commit bronze.variants (ingest_vcf)",  # Hail's genotypes half written
    "before commit ops.runs (build_cohort)",  # every table written, no audit row
    f"after register {MODEL} (train)",  # the alias moved to the killed run's version, no audit row
    f"after commit gold.predictions_{MODEL} (score)",  # predictions committed, the risk page not written
]
TRAIN_AUDITED = "after commit ops.runs (train)"  # the one train point after which the train had succeeded
# a run id or the wall clock: the only columns in which a rerun may differ from a clean run
RUN_COLUMNS = {
    "run_id",
    "_run_id",
    "batch_id",
    "_batch_id",
    "_ingested_at",
    "ingested_at",
    "checked_at",
    "written_at",
    "created_at",
    "updated_at",
    "scored_at",
    # score: the registry's version number of the model and the Delta version of the features it read
    # (kills add versions of both); checked on their own below, against the killed lake's registry and table
    "model_version",
    "input_version",
}


def _comparable(df: Any) -> Any:
    from pyspark.sql.types import MapType

    cols = []
    for f in df.schema.fields:
        if f.name in RUN_COLUMNS:
            continue
        if isinstance(f.dataType, MapType) or "map<" in f.dataType.simpleString():
            cols.append(F.to_json(F.col(f.name)).alias(f.name))
        else:
            cols.append(F.col(f.name))
    return df.select(*cols)


def matrix(labels: list[str]) -> list[str]:
    """Every kill point of a clean run whose fault log is ``labels``, in the order the pipeline
    reaches them: before, during and after each table's commit (the pipeline's lease aside, which
    holds no data) and the MLflow points inside train."""
    kills = []
    for label in labels:
        if label.startswith("before commit ") and "ops.pipeline_lease" not in label:
            table = label[len("before commit ") :]
            kills += [label, f"during commit {table}", f"after commit {table}"]
        elif not label.startswith(("before commit ", "after commit ")):  # train's MLflow points
            kills.append(label)
    return kills


def per_job(kills: list[str], n: int) -> list[str]:
    """``n`` of each job's points in ``kills``, spread evenly from its first to its last (all of
    them when it has no more than n), in the pipeline's order."""
    if n < 2:
        raise ValueError(f"OMICSLAKE_KILL_MATRIX=<n> needs n >= 2 (a job's first and last point), got {n}")
    chosen = set()
    for job in JOBS:
        mine = [k for k in kills if k.endswith(f"({job})")]
        picks = mine if len(mine) <= n else [mine[round(i * (len(mine) - 1) / (n - 1))] for i in range(n)]
        chosen.update(picks)
    return [k for k in kills if k in chosen]


def _attempt(root: Path, sets: list[str], run_id: str, kill_at: str, log: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMICSLAKE_FAULT_KILL_AT": kill_at, "OMICSLAKE_FAULT_LOG": str(log)}
    sets = [x for s in [f"lake.root={root}", *sets] for x in ("--set", s)]
    cmd = [sys.executable, "-m", "omicslake.jobs.cli", "pipeline", "--only", ",".join(JOBS), "--run-id", run_id, *sets]
    # a session of its own: the kill takes the attempt's process group (driver, JVM, workers), not pytest
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, start_new_session=True)


@pytest.mark.slow
def test_a_job_killed_at_any_commit_point_and_rerun_equals_a_clean_run(
    spark: SparkSession, small_clean_lake: dict[str, Any], tmp_path: Path
) -> None:
    # the clean run (tests/small_lake.py, shared with the object-store test): its lake, its input
    # (both lakes read the same files: their paths are in bronze) and the points it reached
    sets, clean_cfg = small_clean_lake["sets"], small_clean_lake["cfg"]
    killed_root = tmp_path / "killed"
    labels = [label for label in small_clean_lake["labels"] if label.endswith(tuple(f"({j})" for j in JOBS))]
    if os.environ.get("OMICSLAKE_KILL_POINTS"):  # the dev loop: chosen points, "|"-separated
        kills = os.environ["OMICSLAKE_KILL_POINTS"].split("|")
    elif os.environ.get("OMICSLAKE_KILL_MATRIX") == "full":
        kills = matrix(labels)
    elif os.environ.get("OMICSLAKE_KILL_MATRIX", "").isdigit():
        kills = per_job(matrix(labels), int(os.environ["OMICSLAKE_KILL_MATRIX"]))
    else:
        kills = KILLS
        missing = [k for k in kills if k.replace("during commit", "before commit") not in labels]
        assert missing == [], f"kill points the clean run never reached (renamed tables?): {missing}"
    counts = {j: sum(k.endswith(f"({j})") for k in kills) for j in JOBS}
    assert "OMICSLAKE_KILL_POINTS" in os.environ or all(n >= 1 for n in counts.values()), counts

    log = tmp_path / "killed_points.log"
    outcomes = []
    hail_started: list[bool] = []
    for k, kill_at in enumerate(kills, 1):
        before = log.read_text().count("\n") if log.exists() else 0
        p = _attempt(killed_root, sets, f"attempt{k}", kill_at, log)
        reached = log.read_text().splitlines()[before:] if log.exists() else []
        outcomes.append((kill_at, p.returncode, reached[-1] if reached else None))
        assert p.returncode == -9, (
            f"attempt {k} was not killed at {kill_at!r} (exit {p.returncode}): {p.stderr[-2000:]}"
        )
        # Hail starts only for a job whose spec calls it (ingest_vcf here): no attempt before the
        # first one that reaches ingest_vcf has Hail's log under the root, every one after it has
        hail_log = killed_root / "_logs" / "hail.log"
        if k == 1 or "(ingest_vcf)" in kill_at:
            hail_started.append(hail_log.exists())
    if "OMICSLAKE_KILL_POINTS" not in os.environ:
        assert hail_started[0] is False, "an attempt killed in ingest_ehr started Hail"
        assert hail_started[-1] is True, "the attempt killed in ingest_vcf did not start Hail (its log moved?)"
    for k, (kill_at, rc, reached) in enumerate(outcomes, 1):  # the chain as it ran (pytest -s shows it)
        print(f"attempt {k:3d}: exit {rc}, killed at {reached!r} (asked: {kill_at!r})")
    killed_cfg = clean_cfg.replace(**{"lake.root": str(killed_root)})
    # the rerun that finishes; genomic_qc too, as the clean run did: it reads the genotypes a killed
    # ingest_vcf left half written, and its tables are compared with the clean run's like the others
    final = run_pipeline(spark, killed_cfg, CLEAN_JOBS, run_id="final")
    assert all(r.status in ("succeeded", "skipped") for r in final), [(r.job, r.status) for r in final]

    clean, killed = Lake(spark, clean_cfg), Lake(spark, killed_cfg)
    data = [n for n in clean.names() if not n.startswith("ops.")]
    assert sorted(n for n in killed.names() if not n.startswith("ops.")) == sorted(data)
    differ = {}
    for name in data:
        d = multiset_diff(_comparable(clean.read(name)), _comparable(killed.read(name)))  # EXCEPT ALL both ways
        n_a, n_b, only_a, only_b = d["rows_a"], d["rows_b"], d["only_a"], d["only_b"]
        if (n_a, only_a, only_b) != (n_b, 0, 0):
            differ[name] = {"clean_rows": n_a, "rerun_rows": n_b, "only_clean": only_a, "only_rerun": only_b}
    assert differ == {}, differ
    # every killed attempt is in ops.runs as interrupted (recorded by the attempt that took its lease over)
    interrupted = {
        r.run_id for r in killed.read("ops.runs").where(F.col("status") == "interrupted").select("run_id").collect()
    }
    assert interrupted == {f"attempt{k}" for k in range(1, len(kills) + 1)}, interrupted
    # score: the killed lake's predictions come from its champion, which the attempt whose train
    # finished registered (not a version a killed train left behind), and read the features as they are
    import mlflow

    from omicslake.ml.tracking import tracking_uri

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(killed_cfg), registry_uri=tracking_uri(killed_cfg))
    champion = client.get_model_version_by_alias(MODEL, "champion")
    trained = {
        r.run_id
        for r in killed.read("ops.runs").where("job = 'train' AND status = 'succeeded'").select("run_id").collect()
    }
    assert client.get_run(champion.run_id).data.tags["omicslake.run_id"] in trained
    # a train killed before its audit row is committed leaves the version it registered (if it got that
    # far: logging the model registers it, so a kill at or after "after log model", in the clean run's
    # order) and the next attempt trains again;
    # one killed after the commit had succeeded: its version is the champion, and nothing trains again
    train_points = [label for label in labels if label.endswith("(train)")]
    registers = next(i for i, label in enumerate(train_points) if label.startswith("after log model"))

    def train_step(kill_at: str) -> int:
        return train_points.index(kill_at.replace("during commit", "before commit"))

    train_kills = [k for k, kill_at in enumerate(kills, 1) if kill_at.endswith("(train)") and kill_at != TRAIN_AUDITED]
    unfinished = [k for k in train_kills if train_step(kills[k - 1]) >= registers]
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert len(versions) == 1 + len(unfinished), versions  # one per unfinished train that registered, kept
    # a train killed before it logged its model (right after its MLflow run started, or after its metrics
    # or files were logged) left a run and no version: that run is KILLED
    exp = client.get_experiment_by_name(killed_cfg.mlflow.experiment)
    for k in (k for k in train_kills if k not in unfinished):
        runs = client.search_runs([exp.experiment_id], f"tags.`omicslake.run_id` = 'attempt{k}'")
        assert [r.info.status for r in runs] == ["KILLED"], (k, kills[k - 1], [r.info.status for r in runs])
    # the versions killed trains registered are tagged as such, and their MLflow runs are not left running
    left = [v for v in client.search_model_versions(f"name='{MODEL}'") if v.run_id != champion.run_id]
    assert sorted(v.tags.get("omicslake.interrupted", "") for v in left) == sorted(f"attempt{k}" for k in unfinished)
    assert {client.get_run(v.run_id).info.status for v in left} <= {"KILLED", "FINISHED"}
    # and no MLflow run of the lake is left RUNNING, with or without a model (a train killed right after
    # its run started has none)
    running = [r.info.run_id for r in client.search_runs([exp.experiment_id]) if r.info.status == "RUNNING"]
    assert running == [], running
    assert "omicslake.interrupted" not in champion.tags
    preds = killed.read(f"gold.predictions_{MODEL}")
    assert {r[0] for r in preds.select("model_version").distinct().collect()} == {int(champion.version)}
    features = killed.version("gold.features_t2d_incident")
    assert {r[0] for r in preds.select("input_version").distinct().collect()} == {features}
    # the risk page is the clean run's, byte for byte (a score killed after its predictions' commit and
    # before its page once left the page missing: the rerun found the predictions and did nothing)
    # The page names the model's and the features' versions, which a killed lake has more of (killed
    # trains registered versions, killed cohort builds committed the features again): the clean page
    # with the killed lake's two versions put in.
    page = Path("reports") / f"risk_{MODEL}.html"
    expected = (small_clean_lake["root"] / page).read_text(encoding="utf-8")
    (clean_model,) = {
        r[0] for r in clean.read(f"gold.predictions_{MODEL}").select("model_version").distinct().collect()
    }
    names = {
        f"({MODEL} v{clean_model})": f"({MODEL} v{champion.version})",
        f"of gold.features_t2d_incident version {clean.version('gold.features_t2d_incident')};": (
            f"of gold.features_t2d_incident version {features};"
        ),
    }
    for old_name, new_name in names.items():
        assert expected.count(old_name) >= 1, f"the risk page no longer says {old_name!r}; update this test"
        expected = expected.replace(old_name, new_name)
    assert (killed_root / page).read_text(encoding="utf-8") == expected
    # no file ingested twice
    files = killed.read("ops.ingested_files").where(F.coalesce(F.col("status"), F.lit("landed")) == "landed")
    assert files.count() == files.select("table_name", "file_sha256").distinct().count()
    assert files.count() == clean.read("ops.ingested_files").count()
