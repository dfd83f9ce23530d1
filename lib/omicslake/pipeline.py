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


def run_pipeline(spark: SparkSession, cfg: Config, jobs: list[str], run_id: str | None = None) -> list[RunResult]:
    run_id = run_id or new_run_id()
    results = []
    for n, job in enumerate(jobs, 1):
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
        print_summary(run_pipeline(spark, cfg, jobs, args.run_id))
        print(f"lake: {cfg.lake_root}")
        return 0

    return with_session(args, "pipeline", action)
