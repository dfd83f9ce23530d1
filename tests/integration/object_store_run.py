"""The object-store run of tests/integration/test_object_store.py, in a process of its own.

The s3a connector's jars must be on the JVM's class path when the session starts, and the test
suite's session is started without them; so this script builds its own session for
``lake.root=s3a://...`` (hadoop-aws from the jar cache) and, in it:

1. runs ingest_ehr -> conform_ehr -> build_cohort (and ingest_vcf -> genomic_qc) through the
   pipeline on the s3a root, on the input, settings and run id of the session's small clean lake
   (tests/small_lake.py: the same jobs and train and score ran there on a local root, in the
   suite's session), then the report job on the s3a root;
2. reads every table of both lakes back and counts the rows each has that the other lacks
   (as ``exceptAll`` both ways does, in one job per table, after dropping the columns that hold the
   wall-clock time of the run);
3. copies the s3a lake, object by object, to another prefix and asks the pipeline what it would
   rerun there, then runs it and records every table's version before and after.

It prints one JSON document on stdout's last line; the test asserts on it.
Usage: python object_store_run.py <s3a root> <s3a copy root> <local root> <bucket endpoint> <run id> <settings as JSON>
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lake_copy import multiset_diff  # tests/integration, this script's folder

from omicslake.config import Config, load_config

# Wall-clock columns: when a row was ingested/run/written. Everything else must be equal.
CLOCK_COLUMNS = {
    "_ingested_at",
    "ingested_at",
    "started_at",
    "ended_at",
    "written_at",
    "created_at",
    "updated_at",
    "_batch_id",
    "duration_s",
    "seconds",
}
EHR_JOBS = ["ingest_ehr", "conform_ehr", "build_cohort"]
VCF_JOBS = ["ingest_vcf", "genomic_qc"]


def _comparable(df: Any) -> Any:
    """Map columns (which EXCEPT cannot compare) as JSON of their entries sorted by key."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    cols = []
    for f in df.schema.fields:
        if isinstance(f.dataType, MapType):
            cols.append(F.to_json(F.array_sort(F.map_entries(F.col(f.name)))).alias(f.name))
        elif "map<" in f.dataType.simpleString():
            cols.append(F.to_json(F.col(f.name)).alias(f.name))
        else:
            cols.append(F.col(f.name))
    return df.select(*cols)


def config(root: str, endpoint: str, sets: list[str]) -> Config:
    """The clean lake's settings (``sets``) on another root, with the s3a connector's."""
    return load_config(
        "local",
        overrides=[
            *sets,
            f"lake.root={root}",
            f"lake.s3_endpoint={endpoint}",
            "lake.s3_path_style=true",
            "lake.s3a_jars=true",
        ],
    )


def main() -> None:
    s3_root, copy_root, local_root, endpoint, run_id, sets_json = sys.argv[1:7]
    sets = json.loads(sets_json)
    s3 = config(s3_root, endpoint, sets)
    local = config(local_root, endpoint, sets)
    copy = config(copy_root, endpoint, sets)

    from pyspark.sql import functions as F

    from omicslake.io.delta import Lake
    from omicslake.io.files import read_text
    from omicslake.jobs.base import execute
    from omicslake.pipeline import predict, run_pipeline
    from omicslake.session import build_session

    out: dict[str, Any] = {"timings": {}}
    t0 = time.monotonic()
    spark = build_session(s3)  # s3a jars and endpoint; reading the local root needs nothing more
    out["timings"]["session"] = round(time.monotonic() - t0, 1)
    jobs = EHR_JOBS + VCF_JOBS
    t = time.monotonic()
    results = run_pipeline(spark, s3, jobs, run_id=run_id)
    out["timings"]["s3"] = round(time.monotonic() - t, 1)
    out["s3_status"] = {r.job: r.status for r in results}
    # the clean run's status of the same jobs, from its audit (it ran train and score too)
    runs = Lake(spark, local).read("ops.runs").where(F.col("run_id") == run_id).select("job", "status", "outputs.table")
    clean = runs.collect()  # one row per job of the clean run
    out["local_status"] = {r.job: r.status for r in clean if r.job in jobs}
    out["local_outputs"] = {r.job: sorted(set(r.table)) for r in clean if r.status == "succeeded"}

    lake_l, lake_s = Lake(spark, local), Lake(spark, s3)
    names_l, names_s = lake_l.names(), lake_s.names()
    out["tables_local"], out["tables_s3"] = names_l, names_s
    compared: dict[str, Any] = {}
    for name in names_s:
        if name.startswith("ops.") or name not in names_l:
            continue
        a, b = lake_l.read(name), lake_s.read(name)
        drop = [c for c in a.columns if c in CLOCK_COLUMNS]
        a, b = _comparable(a.drop(*drop)), _comparable(b.drop(*drop))
        d = multiset_diff(a, b)
        compared[name] = {
            "rows_local": d["rows_a"],
            "rows_s3": d["rows_b"],
            "only_local": d["only_a"],
            "only_s3": d["only_b"],
            "dropped": drop,
            "columns_equal": a.columns == b.columns,
        }
    out["compared"] = compared
    # Where a table lives: the Delta log on S3 names the table's s3a location.
    out["s3_location"] = lake_s.location("silver.person")
    out["s3_detail_location"] = spark.sql(f"DESCRIBE DETAIL delta.`{lake_s.location('silver.person')}`").first()[
        "location"
    ]
    out["report_s3"] = read_text(s3.layout.reports("table1_t2d_incident.md"), s3)[:40]
    # the HTML report of the s3a lake, written where it lives (reports/ on S3, no local folder)
    t = time.monotonic()
    report = execute(spark, s3, "report", run_id=run_id)
    out["timings"]["report"] = round(time.monotonic() - t, 1)
    out["html_report"] = {
        "status": report.status,
        "path": report.metrics.get("report"),
        "latest": read_text(s3.layout.reports("report.html"), s3),
        "this_run": read_text(s3.layout.reports(f"report-{run_id}.html"), s3),
    }

    # A copy of the s3a lake under another prefix is the same lake: nothing reruns.
    t = time.monotonic()
    _copy_prefix(s3_root, copy_root, endpoint)
    out["timings"]["copy"] = round(time.monotonic() - t, 1)
    out["copy_predict"] = {job: [d.run, d.reason] for job, d in predict(spark, copy, jobs).items()}
    lake_c = Lake(spark, copy)
    before = {n: lake_c.version(n) for n in lake_c.names() if not n.startswith("ops.")}
    t = time.monotonic()
    results = run_pipeline(spark, copy, jobs, run_id="r2")
    out["timings"]["copy_pipeline"] = round(time.monotonic() - t, 1)
    out["copy_status"] = {r.job: r.status for r in results}
    after = {n: Lake(spark, copy).version(n) for n in before}
    out["copy_versions_changed"] = {n: [before[n], after[n]] for n in before if before[n] != after[n]}
    out["copy_skip_keys_equal"] = _skip_keys(spark, s3) == _skip_keys(spark, copy)
    out["root_in_ops"] = (
        Lake(spark, copy)
        .read("ops.runs")
        .select(F.to_json(F.struct("*")).alias("j"))
        .where(F.col("j").contains(s3_root.split("://", 1)[1]))
        .count()
    )
    print(json.dumps(out, default=str))


def _skip_keys(spark: Any, cfg: Config) -> dict[str, str]:
    from pyspark.sql import functions as F

    from omicslake.io.delta import Lake

    runs = Lake(spark, cfg).read("ops.runs").where(F.col("status") == "succeeded")
    return {r.job: r.skip_key for r in runs.select("job", "skip_key").distinct().collect()}


def _copy_prefix(src: str, dst: str, endpoint: str) -> None:
    """Copy every object under one s3a prefix to another (what `aws s3 cp --recursive` does)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    bucket, _, src_key = src.split("://", 1)[1].partition("/")
    dst_bucket, _, dst_key = dst.split("://", 1)[1].partition("/")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src_key + "/")
    for page in pages:
        for obj in page.get("Contents", []):
            target = dst_key + obj["Key"][len(src_key) :]
            s3.copy_object(Bucket=dst_bucket, Key=target, CopySource={"Bucket": bucket, "Key": obj["Key"]})


if __name__ == "__main__":
    main()
