"""The pipeline: the implemented jobs of the DAG, in dependency order, in one session."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.errors import OmicslakeError
from omicslake.jobs import DAG, runnable_jobs
from omicslake.jobs.base import RunResult, execute, new_run_id, print_summary, with_session

log = logging.getLogger(__name__)


def plan(only: str | None = None, start: str | None = None) -> list[str]:
    """The jobs to run, in DAG order."""
    jobs = runnable_jobs()
    if only:
        wanted = [j.strip() for j in only.split(",") if j.strip()]
        unknown = [j for j in wanted if j not in DAG]
        if unknown:
            raise OmicslakeError(f"--only: unknown job(s) {unknown}; jobs are {list(DAG)}")
        jobs = [j for j in jobs if j in wanted]
    if start:
        if start not in jobs:
            raise OmicslakeError(f"--from {start!r}: not one of the jobs to run {jobs}")
        jobs = jobs[jobs.index(start) :]
    return jobs


ALWAYS_RUN = {"ingest_vcf", "ingest_ehr", "report"}  # file-incremental already (commit nothing when nothing is new), or cheap


def skip_reason(spark: SparkSession, cfg: Config, job: str) -> str | None:
    """Why ``job`` need not run again, or None. A job is skipped when its last successful run had
    the same job config (``job_digest``), every table it read is still at the version it read,
    and every table it wrote is still at the version it wrote. So after a failure a rerun starts
    at the failed step, and a step whose inputs did not change is not redone."""
    from pyspark.sql import functions as F

    from omicslake.io.delta import Lake
    from omicslake.jobs.base import job_digest

    if job in ALWAYS_RUN:
        return None
    lake = Lake(spark, cfg)
    if not lake.exists("ops.runs"):
        return None
    last = lake.read("ops.runs").where((F.col("job") == job) & (F.col("status") == "succeeded")).orderBy(F.col("ended_at").desc()).first()
    if last is None or (last.metrics or {}).get("_job_config") != job_digest(cfg, job):
        return None
    if job == "generate":
        from omicslake.jobs.generate import landing_dir

        return "same settings, files in place" if (landing_dir(cfg) / "manifest.json").exists() else None
    if not last.inputs:
        return None
    for i in last.inputs:
        if lake.version(i.table) != i.version:
            return None
    for o in last.outputs:
        if lake.version(o.table) != o.version:
            return None
    return f"inputs unchanged since run {last.run_id}"


def run_pipeline(spark: SparkSession, cfg: Config, jobs: list[str], run_id: str | None = None, force: bool = False) -> list[RunResult]:
    run_id = run_id or new_run_id()
    results = []
    for n, job in enumerate(jobs, 1):
        reason = None if force else skip_reason(spark, cfg, job)
        if reason:
            log.info("step %d of %d: %s skipped (%s)", n, len(jobs), job, reason)
            results.append(RunResult(job=job, run_id=run_id, status="skipped", metrics={"reason": reason}))
            continue
        log.info("step %d of %d: %s (run %s)", n, len(jobs), job, run_id)
        t0 = time.monotonic()
        result = execute(spark, cfg, job, run_id)
        rows = sum(w.rows for w in result.outputs)
        log.info("step %d of %d: %s done in %.1f s, %d rows written", n, len(jobs), job, time.monotonic() - t0, rows)
        results.append(result)
    return results


def run_pipeline_from_args(args: argparse.Namespace) -> int:
    try:
        jobs = plan(args.only, args.start)
    except OmicslakeError as exc:
        print(f"omicslake: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for n, job in enumerate(jobs, 1):
            print(f"{n}. {job}  (after: {', '.join(DAG[job]) or '-'})")
        return 0

    def action(spark: SparkSession, cfg: Config) -> int:
        print_summary(run_pipeline(spark, cfg, jobs, args.run_id, force=getattr(args, "force", False)))
        print(f"lake: {cfg.lake_root}")
        return 0

    return with_session(args, "pipeline", action)
