"""spark-submit on a real Spark standalone cluster: a master and one worker started from the
installed pyspark on 127.0.0.1, the wheel from `pip wheel` (conf/ and schemas/ inside), the
demo pipeline through `spark-submit jobs/pipeline.py --env cluster`, one job through its own
entry script, the Delta tables checked, both processes stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest
from pyspark.sql import SparkSession

from omicslake.config import load_config
from omicslake.io.delta import Lake

REPO = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_LOG_DIR=str(tmp / "logs"), SPARK_WORKER_DIR=str(tmp / "work"))
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cluster")
    env = _env(tmp)
    port, ui, wui = _port(), _port(), _port()
    cls = str(SPARK_HOME / "bin" / "spark-class")
    master = subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
                              env=env, stdout=open(tmp / "master.log", "w"), stderr=subprocess.STDOUT)
    url = f"spark://127.0.0.1:{port}"
    worker = subprocess.Popen([cls, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2", "--memory", "4g",
                               "--webui-port", str(wui), "--work-dir", str(tmp / "work")],
                              env=env, stdout=open(tmp / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        alive = 0
        while time.monotonic() < deadline and alive == 0:
            time.sleep(2)
            try:
                state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5).read())
                alive = sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")
            except OSError:
                pass
        assert alive == 1, (tmp / "master.log").read_text()[-2000:] + (tmp / "worker.log").read_text()[-2000:]
        yield {"url": url, "ui": f"http://127.0.0.1:{ui}", "tmp": str(tmp)}
    finally:
        for p in (worker, master):
            p.terminate()
        for p in (worker, master):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    assert worker.poll() is not None and master.poll() is not None


def test_demo_pipeline_through_spark_submit_on_a_standalone_cluster(spark: SparkSession, cluster: dict[str, str], tmp_path: Path) -> None:
    env = _env(Path(cluster["tmp"]))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)], check=True, env=env)
    wheel = next(dist.glob("omicslake-*.whl"))
    extra = subprocess.run([sys.executable, "-m", "omicslake.jobs.cli", "submit-args", "--env", "cluster"], capture_output=True, text=True, check=True, env=env).stdout.split()
    lake = tmp_path / "lake"
    sets = ["--set", f"lake.root={lake}", "--set", "jobs.generate.patients=800", "--set", "jobs.generate.samples=200",
            "--set", "jobs.generate.variants=400", "--set", "spark.shuffle_partitions=4", "--set", 'jobs.train.grid={"regParam": [0.01]}']
    # run from a folder without the checkout, so that conf/ and schemas/ come from the wheel
    submit = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster["url"], *extra, "--driver-memory", "2g", "--executor-memory", "3g",
              "--py-files", str(wheel)]
    work = tmp_path / "cwd"
    work.mkdir()
    env_wheel = {**env, "PYTHONPATH": str(wheel)}
    t0 = time.monotonic()
    res = subprocess.run([*submit, str(REPO / "jobs" / "pipeline.py"), "--env", "cluster", *sets], cwd=work, env=env_wheel, capture_output=True, text=True, timeout=3600)
    print(f"pipeline on the standalone cluster: {time.monotonic() - t0:.0f} s")
    assert res.returncode == 0, res.stderr[-5000:]
    summary = res.stdout
    for job in ("generate", "ingest_vcf", "ingest_ehr", "genomic_qc", "conform_ehr", "genetic_features", "build_cohort", "gwas", "train", "score", "cluster", "survival", "report"):
        assert any(line.startswith(job) and "succeeded" in line for line in summary.splitlines()), (job, summary)
    # the work ran on the cluster's executor, not in a local master
    apps = json.loads(urllib.request.urlopen(cluster["ui"] + "/json/", timeout=5).read())["completedapps"]
    assert apps and all(a["state"] == "FINISHED" for a in apps)
    # one job alone through its own entry script, reading the tables and the registered model the
    # pipeline wrote (score: the same snapshot and model version again adds no prediction)
    res2 = subprocess.run([*submit, str(REPO / "jobs" / "score.py"), "--env", "cluster", *sets, "--run-id", "solo"], cwd=work, env=env_wheel,
                          capture_output=True, text=True, timeout=1800)
    assert res2.returncode == 0, res2.stderr[-5000:]
    # the Delta tables, read back with a local session
    lk = Lake(spark, load_config("local", overrides=[f"lake.root={lake}"]))
    tables = {n: rows for n, _, rows in lk.tables()}
    assert tables["silver.person"] == 800 and tables["bronze.vcf_samples"] == 200
    assert tables["gold.cohort_t2d_incident"] > 600 and tables["gold.features_t2d_incident"] == tables["gold.cohort_t2d_incident"]
    assert tables["gold.gwas_t2d"] > 300 and tables["gold.genetic_pcs"] > 150
    assert any(n.startswith("gold.predictions_") for n in tables)
    runs = lk.read("ops.runs").where("run_id = 'solo'").collect()
    assert len(runs) == 1 and runs[0].status == "succeeded" and runs[0].env == "cluster"
    assert runs[0].metrics["scored"] == "0"
    assert (lake / "reports" / "report.html").exists()
    DONE["lake"] = str(lake)
    DONE["sets"] = sets


DONE: dict[str, object] = {}


def test_pipeline_skips_unchanged_steps_and_resumes_at_the_failed_one(spark: SparkSession) -> None:
    """On the cluster test's lake, in this process: a changed cohort setting and an injected
    failure in train (no feature column matches); then the rerun with train fixed."""
    from omicslake.errors import InputError
    from omicslake.pipeline import plan, run_pipeline

    if "lake" not in DONE:
        pytest.skip("needs the lake of the cluster test")
    sets = [v for k, v in zip(DONE["sets"][::2], DONE["sets"][1::2])]  # type: ignore[index]
    changed = [*sets, "jobs.build_cohort.end_of_data=2020-12-31"]
    cfg = load_config("local", overrides=[*changed, 'jobs.train.include=["no_such_feature_*"]'])
    jobs = plan()
    with pytest.raises(InputError, match="no feature columns"):
        run_pipeline(spark, cfg, jobs, run_id="resume-1")
    lk = Lake(spark, cfg)
    first = {r.job: r.status for r in lk.read("ops.runs").where("run_id = 'resume-1'").collect()}
    # unchanged upstream steps were not run; the changed cohort and what reads it were
    assert first == {"ingest_vcf": "succeeded", "ingest_ehr": "succeeded", "build_cohort": "succeeded", "gwas": "succeeded", "train": "failed"}, first
    results = run_pipeline(spark, load_config("local", overrides=changed), jobs, run_id="resume-2")
    status = {r.job: r.status for r in results}
    assert status["build_cohort"] == "skipped" and status["gwas"] == "skipped" and status["genomic_qc"] == "skipped"
    assert status["train"] == status["score"] == status["cluster"] == status["survival"] == status["report"] == "succeeded", status
