"""What every job shares: its result type, the audited runner, and the common command line.

A job module defines ``SPEC`` (``omicslake.jobs.spec.JobSpec``), ``run(spark, cfg, lake) -> dict``
of metrics (pure orchestration; the ``Lake`` handle records what it read and wrote) and
``main(argv) = job_main(SPEC.name, argv)``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import importlib
import importlib.util
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pyspark.sql import SparkSession

from omicslake import __version__
from omicslake.config import Config, load_config
from omicslake.contracts import load_contract
from omicslake.errors import OmicslakeError, java_chain
from omicslake.io.delta import Lake, WriteResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    job: str
    run_id: str
    status: str
    outputs: tuple[WriteResult, ...] = ()
    inputs: tuple[tuple[str, int], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


JobFn = Callable[[SparkSession, Config, Lake], dict[str, Any] | None]


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def job_module(name: str) -> ModuleType:
    return importlib.import_module(f"omicslake.jobs.{name}")


def _is_job(name: str) -> bool:
    return importlib.util.find_spec(f"omicslake.jobs.{name}") is not None if name.isidentifier() else False


def execute(
    spark: SparkSession, cfg: Config, job: str, run_id: str | None = None, fn: JobFn | None = None
) -> RunResult:
    """Run one job, append its row to ops.runs whatever happens, and re-raise any failure.

    fn replaces the job module's run (for jobs defined elsewhere, e.g. in tests).
    """
    module = job_module(job) if fn is None else None
    run_fn: JobFn = fn or module.run  # type: ignore[union-attr]
    if module is not None and module.SPEC.hail and cfg.hail.enabled:
        from omicslake.session import init_hail

        init_hail(spark, cfg)  # idempotent: once per process, before the first job that calls Hail
    run_id = run_id or new_run_id()
    lake = Lake(spark, cfg, run_id=run_id, job=job)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    status, error, metrics = "succeeded", None, {}
    try:
        metrics = run_fn(spark, cfg, lake) or {}
    except BaseException as exc:
        status = "failed"
        # The first line only: a JVM stack trace belongs in the log, not in the audit table.
        error = error_summary(exc)
        raise
    finally:
        seconds = time.monotonic() - t0
        try:
            _audit(spark, cfg, lake, job, run_id, started, seconds, status, error, metrics)
        finally:
            # A job's cached DataFrames die with it. In local mode cached blocks live in the driver's
            # heap; left behind by a job (or by one that failed half-way) they squeezed the next
            # jobs of a one-session pipeline into GC thrash. Never let this hide the job's own error.
            try:
                spark.catalog.clearCache()
            except Exception as exc:  # noqa: BLE001 - e.g. the JVM is already gone
                log.warning("could not clear the cache after %s: %s", job, type(exc).__name__)
    return RunResult(
        job=job,
        run_id=run_id,
        status=status,
        outputs=tuple(lake.writes),
        inputs=tuple(lake.reads.items()),
        metrics=metrics,
        seconds=seconds,
    )


def error_summary(exc: BaseException) -> str:
    """An exception as one line for ops.runs: its class and the first line of its message; for an
    error raised in the JVM (py4j's "An error occurred while calling o123.save."), the root cause's
    class and first line instead, which says what went wrong."""
    text = str(exc)
    if getattr(exc, "java_exception", None) is not None:
        try:
            root = java_chain(exc)[-1]
            name = str(root.getClass().getSimpleName())
            text = str(root.getMessage() or "")
            return f"{name}: {text.splitlines()[0] if text else ''}"[:2000]
        except Exception:  # noqa: BLE001 - the JVM may be gone; fall back to the Python side
            pass
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:2000]


def _audit(
    spark: SparkSession,
    cfg: Config,
    lake: Lake,
    job: str,
    run_id: str,
    started: dt.datetime,
    seconds: float,
    status: str,
    error: str | None,
    metrics: dict[str, Any],
) -> None:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = None
    from omicslake.jobs.spec import JobSpec, skip_key

    spec = getattr(job_module(job), "SPEC", None) if _is_job(job) else None
    row = (
        run_id,
        job,
        cfg.env,
        cfg.digest(),
        skip_key(cfg, spec) if isinstance(spec, JobSpec) else None,
        __version__,
        user,
        started.replace(tzinfo=None),
        dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        float(seconds),
        status,
        error,
        [(t, v) for t, v in lake.reads.items()],
        [(w.table, w.version, w.rows, w.mode, w.skipped) for w in lake.writes],
        [(path, role, digest) for (path, role), digest in sorted(lake.files.items())],
        [(name, ref, version) for (name, ref), version in sorted(lake.models.items())],
        {k: json.dumps(v, default=str, sort_keys=True) for k, v in metrics.items()},
    )
    audit = Lake(spark, cfg, run_id=f"{run_id}:{job}:{uuid.uuid4().hex[:8]}", job=job)
    schema = load_contract("ops.runs").struct()
    # merge_schema: a lake audited by an older omicslake gains the new columns instead of failing
    audit.write(spark.createDataFrame([row], schema), "ops.runs", mode="append", merge_schema=True)


# -------------------------------------------------------------------------------- command line


def common_args(parser: argparse.ArgumentParser) -> None:
    """--env, --conf-file, --set, --run-id and --log-level: every command touching the lake."""
    parser.add_argument("--env", default="local", help="conf/<env>.yaml to layer over base (default: local)")
    parser.add_argument(
        "--conf-file", action="append", default=[], metavar="FILE", help="extra YAML layered last (repeatable)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set lake.root=/data/lake (repeatable)",
    )
    parser.add_argument("--run-id", help="reuse a run id to resume/retry a run idempotently")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def config_from_args(args: argparse.Namespace, job: str | None = None) -> Config:
    return load_config(args.env, job=job, conf_files=args.conf_file, overrides=args.overrides)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "urllib3", "matplotlib", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def owned_session(cfg: Config) -> tuple[SparkSession, bool]:
    """The session for cfg, and whether this call created it (and so must stop it). Hail is not
    initialised here: ``execute`` does it before the first job whose spec needs it."""
    from omicslake.session import build_session

    owned = SparkSession.getActiveSession() is None
    return build_session(cfg, hail=False), owned


def job_main(job: str, argv: Sequence[str] | None = None) -> int:
    """The spark-submit / console-script entry point of one job."""
    module = job_module(job)
    parser = argparse.ArgumentParser(prog=f"omicslake run {job}", description=module.SPEC.description)
    common_args(parser)
    args = parser.parse_args(argv)
    return run_from_args(job, args)


def with_session(
    args: argparse.Namespace, what: str, action: Callable[[SparkSession, Config], int], job: str | None = None
) -> int:
    """The frame of every lake command: logging, config (exit 2 on a ConfigError), the session
    (stopped only if this call made it), and our own errors as one line on stderr (exit 1)."""
    setup_logging(args.log_level)
    try:
        cfg = config_from_args(args, job)
    except OmicslakeError as exc:
        print(f"omicslake: {exc}", file=sys.stderr)
        return 2
    from omicslake.session import stop_session

    spark, owned = owned_session(cfg)
    try:
        return action(spark, cfg)
    except OmicslakeError as exc:
        print(f"omicslake {what}: {exc}", file=sys.stderr)
        return 1
    finally:
        if owned:
            stop_session(spark)


def run_from_args(job: str, args: argparse.Namespace) -> int:
    def action(spark: SparkSession, cfg: Config) -> int:
        print_summary([execute(spark, cfg, job, args.run_id)])
        return 0

    return with_session(args, job, action, job)


def print_summary(results: Sequence[RunResult]) -> None:
    print(f"{'job':<18}{'status':<11}{'seconds':>9}  outputs")
    for r in results:
        outs = ", ".join(f"{w.table}@v{w.version} ({w.rows} rows{' skipped' if w.skipped else ''})" for w in r.outputs)
        print(f"{r.job:<18}{r.status:<11}{r.seconds:>9.1f}  {outs or '-'}")
