"""A lake on object storage, for real: moto's S3 server on 127.0.0.1, Spark's s3a connector
(hadoop-aws and the AWS SDK bundle from the jar cache), lake.root=s3a://bucket/lake.

The jobs from ingest to gold (and ingest_vcf -> genomic_qc) run on the s3a root with the input,
settings, run id and pseudonym key of the session's small clean lake (tests/small_lake.py, a local
root; the kill chain's clean run too); every table of the s3a lake holds the rows of the local
one's. A copy of the s3a lake under another prefix is the same lake: the pipeline reruns nothing.
The Spark side runs in a process of its own (object_store_run.py): the connector's jars must be
on the class path when a session starts, and the suite's session starts without them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import under_ci
from omicslake.config import Config, load_config
from omicslake.io.layout import Layout

HERE = Path(__file__).resolve().parent
BUCKET = "omicslake-test"
# moto accepts any credentials; these are test values, not secrets.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with one bucket; stopped at the end."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        msg = f"moto is not installed ({exc}); ./dev test installs it"
        if under_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    import boto3

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.mark.slow
def test_pipeline_on_s3a_equals_local_and_a_copied_lake_reruns_nothing(
    s3_endpoint: str, small_clean_lake: dict[str, Any], pseudonym_key: str
) -> None:
    env = {
        **os.environ,
        **CREDENTIALS,
        "OMICSLAKE_PSEUDONYM_KEY": pseudonym_key,
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("AWS_PROFILE", None)
    s3_root, copy_root = f"s3a://{BUCKET}/lake", f"s3a://{BUCKET}/moved/lake"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "object_store_run.py"),
            s3_root,
            copy_root,
            str(small_clean_lake["root"]),
            s3_endpoint,
            small_clean_lake["run_id"],
            json.dumps(small_clean_lake["sets"]),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, f"object-store run failed ({elapsed:.0f} s):\n{proc.stderr[-6000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(out["timings"]), f"total {elapsed:.0f} s")

    # Every job succeeded on both roots, and both lakes hold the same tables, but for those of the
    # jobs the clean run ran besides (train and score: MLflow on an object store needs a tracking server)
    run_id = small_clean_lake["run_id"]
    assert set(out["local_status"].values()) == {"succeeded"}, out["local_status"]
    assert out["s3_status"] == out["local_status"]
    assert len(out["s3_status"]) == 5, out["s3_status"]
    only_local = set(out["tables_local"]) - set(out["tables_s3"])
    others = {t for job, tables in out["local_outputs"].items() if job not in out["s3_status"] for t in tables}
    assert only_local and only_local <= others, (only_local, others)
    assert set(out["tables_s3"]) <= set(out["tables_local"])
    # The tables really are on S3 (Delta's own idea of where the table is).
    assert out["s3_detail_location"].startswith(f"s3a://{BUCKET}/lake/silver/person")
    assert out["report_s3"].startswith("# Table 1: t2d_incident")
    # The HTML report of the s3a lake is on S3 (both files, the same page), and it shows the lake's tables.
    html = out["html_report"]
    assert html["status"] == "succeeded" and html["path"] == f"<root>/reports/report-{run_id}.html", html["path"]
    assert html["latest"] == html["this_run"]
    assert f"lake {s3_root} · run {run_id}" in html["latest"]
    assert "Table 1" in html["latest"] and "genomic_qc" in html["latest"]

    # Equal rows, table by table (bronze to gold, quarantines included).
    compared = out["compared"]
    for layer in ("bronze", "silver", "gold", "quarantine"):
        assert any(n.startswith(layer + ".") for n in compared), f"no {layer} table compared: {sorted(compared)}"
    for name in ("silver.person", "gold.cohort_t2d_incident", "gold.features_t2d_incident", "silver.variant_qc"):
        assert compared[name]["rows_local"] > 0, (name, compared[name])
    unequal = {
        n: c
        for n, c in compared.items()
        if c["only_local"] or c["only_s3"] or c["rows_local"] != c["rows_s3"] or not c["columns_equal"]
    }
    assert not unequal, unequal

    # The copied lake: every job that can skip does, nothing commits, the audit names no root.
    would_run = {
        job: reason for job, (run, reason) in out["copy_predict"].items() if run and "always runs" not in reason
    }
    assert not would_run, would_run
    assert out["copy_versions_changed"] == {}
    assert out["copy_skip_keys_equal"]
    assert out["root_in_ops"] == 0


def test_layout_locations_and_portable_paths(tmp_path: Path) -> None:
    s3 = Layout.of("s3a://bucket/lake/")
    assert (s3.root, s3.scheme, s3.is_local, s3.needs_s3a) == ("s3a://bucket/lake", "s3a", False, True)
    assert s3.table("silver", "person") == "s3a://bucket/lake/silver/person"
    assert s3.reports("table1_x.md") == "s3a://bucket/lake/reports/table1_x.md"
    assert s3.tmp("hail") == "s3a://bucket/lake/_tmp/hail"
    assert s3.portable("s3a://bucket/lake/landing/a.csv") == "<root>/landing/a.csv"
    assert s3.portable("s3a://bucket/lake2/a.csv") == "s3a://bucket/lake2/a.csv"  # a sibling is not under the root
    moved = Layout.of("s3a://other/place")
    assert moved.resolve(s3.portable("s3a://bucket/lake/landing/a.csv")) == "s3a://other/place/landing/a.csv"
    local = Layout.of(str(tmp_path / "lake"))
    assert local.is_local and local.table("gold", "t") == str(tmp_path / "lake" / "gold" / "t")
    assert local.portable(tmp_path / "lake" / "landing" / "x.csv") == "<root>/landing/x.csv"
    assert Layout.of(f"file://{tmp_path}/lake").root == str(tmp_path / "lake")


def test_object_store_roots_are_checked_and_mlflow_needs_a_tracking_store(tmp_path: Path) -> None:
    from omicslake.errors import ConfigError
    from omicslake.ml.tracking import tracking_uri
    from omicslake.session import spark_conf

    with pytest.raises(ConfigError, match="s3a://bucket/lake"):
        Layout.of("s3://bucket/lake")
    with pytest.raises(ConfigError, match="unknown scheme 'ftp'"):
        Layout.of("ftp://host/lake")
    cfg: Config = load_config(
        "local",
        overrides=[
            "lake.root=s3a://bucket/lake",
            "lake.s3_endpoint=http://127.0.0.1:9",
            "lake.s3_path_style=true",
            f"delta.jar_cache={tmp_path}/jars",
        ],
    )
    with pytest.raises(ConfigError, match="mlflow.tracking_uri"):
        tracking_uri(cfg)
    with pytest.raises(ConfigError, match="object-store URI"):
        _ = cfg.lake_root
    assert tracking_uri(cfg.replace(**{"mlflow.tracking_uri": "http://mlflow:5000"})) == "http://mlflow:5000"
    # A local root adds no s3a jars or settings (no download, no endpoint).
    conf = spark_conf(cfg.replace(**{"lake.root": str(tmp_path / "lake"), "delta.jar_cache": None}))
    assert "hadoop-aws" not in conf.get("spark.jars", "") and not any(k.startswith("spark.hadoop.fs.s3a") for k in conf)
