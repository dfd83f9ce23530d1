"""The pipeline: every job of the DAG, in dependency order, in one session, skipping the jobs
whose inputs are unchanged.

A job is skipped only when its last successful run had the same skip key (the config its spec
declares, and the omicslake version) and everything it recorded reading is unchanged: every table
at the version it read, every file with the same SHA-256, every registered model asked for by
alias still at the version it loaded. Its outputs must also still be at the versions it wrote.
So after a failure a rerun starts at the failed step, and a new champion model, an edited PRS
weights file or a changed QC threshold reruns exactly the jobs downstream of it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.errors import OmicslakeError
from omicslake.io.files import is_file, sha256
from omicslake.jobs import dag, pipeline_jobs, spec, specs
from omicslake.jobs.base import RunResult, execute, new_run_id, print_summary, with_session

log = logging.getLogger(__name__)


def plan(only: str | None = None, start: str | None = None) -> list[str]:
    """The jobs to run, in DAG order: the pipeline's jobs, or those --only names (which may be a job
    outside the pipeline, e.g. maintain)."""
    jobs = pipeline_jobs()
    if only:
        jobs = list(specs())
        wanted = [j.strip() for j in only.split(",") if j.strip()]
        unknown = [j for j in wanted if j not in jobs]
        if unknown:
            raise OmicslakeError(f"--only: unknown job(s) {unknown}; jobs are {jobs}")
        jobs = [j for j in jobs if j in wanted]
    if start:
        if start not in jobs:
            raise OmicslakeError(f"--from {start!r}: not one of the jobs to run {jobs}")
        jobs = jobs[jobs.index(start) :]
    return jobs


@dataclass(frozen=True)
class Decision:
    """Whether a job runs (``run``) and why, in words (``reason``)."""

    run: bool
    reason: str


def skip_decision(spark: SparkSession, cfg: Config, job: str) -> Decision:
    """Whether ``job`` must run, and why (the first input found changed, or why it may skip)."""
    from pyspark.sql import functions as F

    from omicslake.io.delta import ABSENT, Lake
    from omicslake.jobs.spec import skip_key

    s = spec(job)
    if s.always_run:
        return Decision(True, "always runs (decides for itself what is new)")
    lake = Lake(spark, cfg)
    if not lake.exists("ops.runs"):
        return Decision(True, "no earlier run")
    runs = lake.read("ops.runs")
    if "skip_key" not in runs.columns:
        return Decision(True, "the lake's audit predates skip keys")
    last = (
        runs.where((F.col("job") == job) & (F.col("status") == "succeeded")).orderBy(F.col("ended_at").desc()).first()
    )
    if last is None:
        return Decision(True, "no earlier successful run")
    if last.skip_key != skip_key(cfg, s):
        return Decision(True, f"its config ({', '.join(s.config) or 'none'}) or the omicslake version changed")
    # A table at a later version whose later commits are all maintenance (OPTIMIZE, VACUUM) holds
    # the same rows: maintain does not make the jobs that read it rerun.
    written = {o.table for o in last.outputs}
    for i in last.inputs:
        now = lake.version(i.table)
        if i.version == ABSENT:  # an optional input the job found absent (Lake.exists)
            if now is not None and i.table not in written:
                return Decision(True, f"input {i.table} exists now; it was absent")
            continue
        if now != i.version and (now is None or now < i.version or lake.data_changed(i.table, i.version)):
            return Decision(True, f"input {i.table} is at version {now}, was {i.version}")
    for o in last.outputs:
        now = lake.version(o.table)
        if now != o.version and (now is None or now < o.version or lake.data_changed(o.table, o.version)):
            return Decision(True, f"output {o.table} is at version {now}, was {o.version}")
    for f in last.files or []:
        path = lake.locate(f.path)
        if not is_file(path, cfg):
            return Decision(True, f"file {f.path} ({f.role}) is gone")
        if sha256(path, cfg) != f.sha256:
            return Decision(True, f"file {f.path} ({f.role}) changed")
    for m in last.models or []:
        now_version = _model_version(cfg, m.name, m.ref)
        if now_version != m.version:
            return Decision(True, f"model {m.name} {m.ref} is version {now_version}, was {m.version}")
    if not (last.inputs or last.files):
        return Decision(True, "its last run recorded no inputs")
    return Decision(False, f"inputs unchanged since run {last.run_id}")


def _model_version(cfg: Config, name: str, ref: str) -> str | None:
    """The version a registered model reference resolves to now ("alias champion", "version 3")."""
    import mlflow

    from omicslake.ml.tracking import resolve_model, setup

    setup(cfg)
    try:
        return str(resolve_model(name, ref).version)
    except mlflow.exceptions.MlflowException:
        return None


def predict(spark: SparkSession, cfg: Config, jobs: list[str]) -> dict[str, Decision]:
    """What a pipeline run of ``jobs`` would do, without running anything: a job runs when its own
    decision says so or when a job it runs after will rerun (its outputs get new versions). An
    always-run job (an ingest) propagates nothing: it commits only when it finds new files."""
    out: dict[str, Decision] = {}
    for job in jobs:
        own = skip_decision(spark, cfg, job)
        upstream = [d for d in dag()[job] if d in out and out[d].run and not spec(d).always_run]
        if own.run or not upstream:
            out[job] = own
        else:
            out[job] = Decision(True, f"after {', '.join(upstream)}, which will rerun")
    return out


def run_pipeline(
    spark: SparkSession,
    cfg: Config,
    jobs: list[str],
    run_id: str | None = None,
    force: bool = False,
    break_lease: bool = False,
) -> list[RunResult]:
    """Run ``jobs`` in the order given under one run id (a new one when None), skipping those
    ``skip_decision`` lets skip unless ``force``; one RunResult per job (status "skipped" and the reason
    for a skipped one). A job's failure is raised and stops the rest. The whole run holds the lake's
    lease (``omicslake.io.lease``): LeaseHeldError, before any job, when another live pipeline has it."""
    from omicslake.io import lease
    from omicslake.io.delta import Lake

    run_id = run_id or new_run_id()
    lake = Lake(spark, cfg, run_id=run_id)
    with lease.held(lake, run_id, cfg.lake.lease_hours, force=break_lease):
        return _run_jobs(spark, cfg, jobs, run_id, force, lambda: lease.renew(lake, run_id, cfg.lake.lease_hours))


def _run_jobs(
    spark: SparkSession, cfg: Config, jobs: list[str], run_id: str, force: bool, renew: Any
) -> list[RunResult]:
    results = []
    for n, job in enumerate(jobs, 1):
        renew()
        decision = Decision(True, "--force") if force else skip_decision(spark, cfg, job)
        if not decision.run:
            log.info("step %d of %d: %s skipped (%s)", n, len(jobs), job, decision.reason)
            results.append(RunResult(job=job, run_id=run_id, status="skipped", metrics={"reason": decision.reason}))
            continue
        log.info("step %d of %d: %s (run %s; %s)", n, len(jobs), job, run_id, decision.reason)
        t0 = time.monotonic()
        result = execute(spark, cfg, job, run_id)
        rows = sum(w.rows for w in result.outputs)
        log.info("step %d of %d: %s done in %.1f s, %d rows written", n, len(jobs), job, time.monotonic() - t0, rows)
        results.append(result)
    return results


def run_pipeline_from_args(args: argparse.Namespace) -> int:
    """``omicslake pipeline``: plan the jobs from --only/--from, then with --dry-run print each one's
    decision, else run them and print a summary and the lake root. Exit status 0; 2 for an unknown job
    or a bad config; 1 for another omicslake error."""
    try:
        jobs = plan(args.only, args.start)
    except OmicslakeError as exc:
        print(f"omicslake: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:

        def explain(spark: SparkSession, cfg: Config) -> int:
            decisions = predict(spark, cfg, jobs)
            for n, job in enumerate(jobs, 1):
                d = decisions[job]
                print(
                    f"{n:>2}. {job:<18} {'run ' if d.run else 'skip'}  {d.reason}  (after: {', '.join(dag()[job]) or '-'})"
                )
            return 0

        return with_session(args, "pipeline", explain)

    def action(spark: SparkSession, cfg: Config) -> int:
        print_summary(
            run_pipeline(
                spark,
                cfg,
                jobs,
                args.run_id,
                force=getattr(args, "force", False),
                break_lease=getattr(args, "break_lease", False),
            )
        )
        print(f"lake: {cfg.layout.root}")
        return 0

    return with_session(args, "pipeline", action)
