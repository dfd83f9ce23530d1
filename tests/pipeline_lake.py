"""The one whole-pipeline lake of the test session: the demo pipeline through spark-submit on a real
standalone cluster (a master and one worker started from the installed pyspark on 127.0.0.1, the
wheel from `pip wheel` with conf/ and schemas/ inside), then one job through its own entry script.

Several modules need a lake that every job has run on (the cluster test, the report check, the
pipeline's skip decisions). It is built once per session and never changed: a test that changes a
lake works on its own copy (``lake_copy.copy_lake``). The cluster runs only while the pipeline
does, so its JVMs do not hold memory for the rest of the session.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyspark
import pytest
from pyspark.sql import SparkSession

from omicslake.config import load_config
from omicslake.io.delta import Lake
from omicslake.synth.people import REFERENCE_DATE

REPO = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(pyspark.__file__).parent
PIPELINE_PATIENTS, PIPELINE_SAMPLES, PIPELINE_VARIANTS = 800, 200, 400
PIPELINE_EXPOSURE_SHARE = 1.0
# The pipeline's settings (besides lake.root); a test that reruns the pipeline on a copy of its lake
# uses the same ones, so that the skip decision sees an unchanged configuration.
PIPELINE_SETS = [
    f"jobs.generate.patients={PIPELINE_PATIENTS}",
    f"jobs.generate.samples={PIPELINE_SAMPLES}",
    f"jobs.generate.variants={PIPELINE_VARIANTS}",
    "spark.shuffle_partitions=4",
    'jobs.train.grid={"regParam": [0.01]}',
    # conf/cluster.yaml keeps Delta's 50 tasks per snapshot rebuild (right for a cluster's big tables);
    # on this lake of small tables that is mostly task overhead (2.5x the time of an append + count).
    # The executors run this checkout's interpreter, where omicslake is installed, so their Python workers
    # can start from omicslake.pydaemon, as on a cluster whose nodes have omicslake installed
    # (docs/operations.md; local mode sets it itself)
    'spark.conf={"spark.databricks.delta.snapshotPartitions": "2", "spark.python.daemon.module": "omicslake.pydaemon"}',
    # the planted drug exposure (synth/exposure.py) in the EHR files of every patient, for the study job
    f"jobs.generate.exposure_share={PIPELINE_EXPOSURE_SHARE}",
    # ages are top-coded at 90 as of the reference date (default: today), so the lake's ages, and every
    # estimate adjusted for age, would change with the calendar; the synthetic world's own today instead
    f"jobs.conform_ehr.reference_date={REFERENCE_DATE}",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)  # C1, as ./dev test sets it: the full JIT was no faster here in the suite (tests/jit.py)
    # Spark's own defaults, as on a cluster: the suite's interpreted expressions (tests/spark_conf) stop
    # here, so every job of the pipeline runs Spark's generated code once in the suite
    env.pop("SPARK_CONF_DIR", None)
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_WORKER_DIR=str(tmp / "work"),
    )
    return env


@contextmanager
def standalone_cluster(tmp: Path) -> Iterator[dict[str, str]]:
    """A Spark standalone master and one worker (2 cores, 4 GB) on 127.0.0.1; both stopped on exit."""
    env = _env(tmp)
    port, ui, wui = _port(), _port(), _port()
    cls = str(SPARK_HOME / "bin" / "spark-class")
    master = subprocess.Popen(
        [
            cls,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        env=env,
        stdout=open(tmp / "master.log", "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"spark://127.0.0.1:{port}"
    worker = subprocess.Popen(
        [
            cls,
            "org.apache.spark.deploy.worker.Worker",
            url,
            "--host",
            "127.0.0.1",
            "--cores",
            "2",
            "--memory",
            "4g",
            "--webui-port",
            str(wui),
            "--work-dir",
            str(tmp / "work"),
        ],
        env=env,
        stdout=open(tmp / "worker.log", "w"),
        stderr=subprocess.STDOUT,
    )
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


@pytest.fixture(scope="session")
def pipeline(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo pipeline through spark-submit on the cluster, then score alone through its own entry
    script; what the tests check is read here, once, so that a test that goes on to change a lake
    (on its copy) cannot change what another one sees, whatever the order."""
    tmp = tmp_path_factory.mktemp("pipeline")
    lake = tmp / "lake"
    sets = [x for s in [f"lake.root={lake}", *PIPELINE_SETS] for x in ("--set", s)]
    with standalone_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        env = _env(Path(cluster["tmp"]))
        dist = tmp / "dist"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(dist),
                str(REPO),
            ],
            check=True,
            env=env,
        )
        wheel = next(dist.glob("omicslake-*.whl"))
        extra = subprocess.run(
            [sys.executable, "-m", "omicslake.jobs.cli", "submit-args", "--env", "cluster"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.split()
        # run from a folder without the checkout, so that conf/ and schemas/ come from the wheel
        submit = [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            cluster["url"],
            *extra,
            "--driver-memory",
            "2g",
            "--executor-memory",
            "3g",
            "--py-files",
            str(wheel),
        ]
        work = tmp / "cwd"
        work.mkdir()
        env_wheel = {**env, "PYTHONPATH": str(wheel)}
        t0 = time.monotonic()
        res = subprocess.run(
            [*submit, str(REPO / "jobs" / "pipeline.py"), "--env", "cluster", *sets],
            cwd=work,
            env=env_wheel,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        print(f"pipeline on the standalone cluster: {time.monotonic() - t0:.0f} s")
        assert res.returncode == 0, res.stderr[-5000:]
        apps = json.loads(urllib.request.urlopen(cluster["ui"] + "/json/", timeout=5).read())["completedapps"]
        # the pipeline's report, as it wrote it, before anything else runs on the lake
        report = tmp / "pipeline-report.html"
        shutil.copyfile(lake / "reports" / "report.html", report)
        # one job alone through its own entry script, reading the tables and the registered model the
        # pipeline wrote (score: the same snapshot and model version again adds no prediction)
        res2 = subprocess.run(
            [*submit, str(REPO / "jobs" / "score.py"), "--env", "cluster", *sets, "--run-id", "solo"],
            cwd=work,
            env=env_wheel,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert res2.returncode == 0, res2.stderr[-5000:]
        # everything the run printed, for the scans of logs (the cluster's own logs and the executors'
        # stderr stay under cluster["tmp"])
        logs = tmp / "logs"
        logs.mkdir()
        for name, text in (
            ("pipeline.out", res.stdout),
            ("pipeline.err", res.stderr),
            ("score.out", res2.stdout),
            ("score.err", res2.stderr),
        ):
            (logs / name).write_text(text)
    # the Delta tables, read back with a local session
    lk = Lake(spark, load_config("local", overrides=[f"lake.root={lake}"]))
    audit = [r.asDict(recursive=True) for r in lk.read("ops.runs").collect()]  # one row per job run
    return {
        "lake": lake,
        "sets": sets,
        "summary": res.stdout,
        "apps": apps,
        "report": report,
        "logs": [logs, Path(cluster["tmp"])],
        "tables": {n: rows for n, _, rows in lk.tables()},
        "solo": [r for r in audit if r["run_id"] == "solo"],
        # the pipeline run's audit rows: each job with the tables it read (and their versions) and wrote
        "runs": [r for r in audit if r["run_id"] != "solo"],
    }
