"""A lease on the lake for the pipeline: two pipelines on one lake do not interleave silently.

The lease is one row of ``ops.pipeline_lease`` (holder run id, host, pid, when it was taken and
until when it holds). Taking it is a compare-and-swap on that row through a Delta MERGE: the
update applies only if the row is still the one the taker read, and two takers racing on the same
snapshot collide in Delta's conflict check (one commit wins, the other gets a concurrent
modification error and reads the winner). So it works wherever the Delta log is consistent
(local disk, HDFS, S3 with a log store that serialises commits, Databricks), without a lock
service.

A lease is free when nobody holds it, when it expired (``lake.lease_hours`` after it was taken or
last renewed), or when its holder ran on this host and its process is gone (a killed pipeline).
Taking over a dead holder's lease appends an ``interrupted`` row for that run to ``ops.runs``, so
a run that never reached its own audit row is recognisable. ``force`` takes any lease (the
``--break-lease`` of ``omicslake pipeline``, for a holder known dead on another host).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.sql import functions as F

from omicslake.contracts import load_contract
from omicslake.errors import OmicslakeError
from omicslake.io.delta import Lake

log = logging.getLogger(__name__)
TABLE = "ops.pipeline_lease"
NAME = "pipeline"


class LeaseHeldError(OmicslakeError):
    """Another live pipeline holds the lake's lease."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lease: run id, host, process id, when taken, until when."""

    run_id: str
    host: str
    pid: int
    acquired_at: dt.datetime
    expires_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def current(lake: Lake) -> Holder | None:
    """The lease's holder as the table says now, or None when nobody holds it."""
    if not lake.exists(TABLE):
        return None
    rows = lake.read(TABLE).where(F.col("lease") == NAME).collect()  # at most one row
    if not rows or rows[0].run_id is None:
        return None
    r = rows[0]
    return Holder(r.run_id, r.host, int(r.pid), r.acquired_at, r.expires_at)


def _alive_here(h: Holder) -> bool:
    """Whether the holder's process runs on this host (False: it ran here and is gone)."""
    if h.host != socket.gethostname():
        return True  # another host: only expiry or force frees it
    try:
        os.kill(h.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def why_free(h: Holder | None, run_id: str, now: dt.datetime, force: bool) -> str | None:
    """Why the lease may be taken by ``run_id`` (a reason in words), or None when it may not."""
    if h is None:
        return "free"
    if h.run_id == run_id:
        if h.host == socket.gethostname() and h.pid != os.getpid() and not _alive_here(h):
            return f"an earlier attempt of this run (pid {h.pid} on {h.host}) is gone"
        return "already ours"
    if h.expires_at < now:
        return f"expired at {h.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    if not _alive_here(h):
        return f"its holder (pid {h.pid} on {h.host}) is gone"
    if force:
        return "broken by force"
    return None


def _cas(lake: Lake, seen: Holder | None, new: dict[str, Any]) -> None:
    """Write ``new`` as the lease row if the row is still ``seen`` (None: no row)."""
    contract = load_contract(TABLE)
    src = lake.spark.createDataFrame([tuple(new[c] for c in contract.names)], contract.struct())
    if not lake.exists(TABLE):
        try:
            lake.write(src.limit(0), TABLE, mode="append")
        except Exception:  # noqa: BLE001 - another taker created it at the same moment; the merge decides
            pass
    if seen is None:  # no row, or the row of a released lease
        still = F.col("t.run_id").isNull()
    else:
        still = (F.col("t.run_id") == F.lit(seen.run_id)) & (F.col("t.acquired_at") == F.lit(seen.acquired_at))
    lake.compare_and_set(src, TABLE, "lease", still)


def acquire(lake: Lake, run_id: str, hours: float, force: bool = False) -> Holder:
    """Take the lease for ``run_id`` for ``hours``; LeaseHeldError naming the holder when another live
    pipeline has it. Taking over a dead or expired holder's lease records that run as interrupted."""
    now = _now()
    seen = current(lake)
    reason = why_free(seen, run_id, now, force)
    if reason is None:
        assert seen is not None
        raise LeaseHeldError(_held_message(lake, seen))
    new = {
        "lease": NAME,
        "run_id": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "acquired_at": now,
        "expires_at": now + dt.timedelta(hours=hours),
    }
    try:
        _cas(lake, seen, new)
    except Exception as exc:  # noqa: BLE001 - Delta's concurrent-modification errors are Java exceptions
        if "Concurrent" not in type(exc).__name__ + str(exc)[:2000]:
            raise
        log.info("lease: another pipeline took it at the same moment")
    got = current(lake)
    if got is None or got.run_id != run_id:
        assert got is not None or seen is not None
        raise LeaseHeldError(_held_message(lake, got or seen))  # type: ignore[arg-type]
    _remember(lake, got)
    if seen is not None and reason != "already ours":
        log.warning("lease: taken over from run %s (%s)", seen.run_id, reason)
        _record_interrupted(lake, seen, reason)
    return got


# (lake root, run id) -> (a version of the lease table at which the row was ours, the expiry it says)
_OURS: dict[tuple[str, str], tuple[int | None, dt.datetime]] = {}


def _remember(lake: Lake, h: Holder) -> None:
    """Called right after ``current`` read ``h`` as ours: the version that read pinned is one at which
    the row was ours (not the table's version now, which another taker may have moved on since)."""
    _OURS[(str(lake.cfg.layout.root), h.run_id)] = (lake.reads.get(TABLE), h.expires_at)


def renew(lake: Lake, run_id: str, hours: float) -> None:
    """Before each job: check that ``run_id`` still holds the lease (LeaseHeldError if not) and push its
    expiry ``hours`` ahead once less than half of it is left. While the lease table's version is the
    one at which we last read the row as ours, nobody has written it since, so it is still ours: one
    listing of its log, no read of the row and no MERGE (those cost seconds per job)."""
    now = _now()
    mine = _OURS.get((str(lake.cfg.layout.root), run_id))
    if mine is not None and mine[0] is not None and lake.version(TABLE) == mine[0]:
        if mine[1] - now > dt.timedelta(hours=hours / 2):
            return
    seen = current(lake)
    if seen is None or seen.run_id != run_id:
        raise LeaseHeldError(f"the pipeline lease of {lake.cfg.layout.root} is no longer held by run {run_id}")
    _cas(lake, seen, {**seen.__dict__, "lease": NAME, "expires_at": now + dt.timedelta(hours=hours)})
    got = current(lake)
    if got is None or got.run_id != run_id:
        raise LeaseHeldError(f"the pipeline lease of {lake.cfg.layout.root} is no longer held by run {run_id}")
    _remember(lake, got)


def release(lake: Lake, run_id: str) -> None:
    """Give the lease back (only if ``run_id`` still holds it)."""
    seen = current(lake)
    if seen is None or seen.run_id != run_id:
        return
    empty = {"lease": NAME, "run_id": None, "host": None, "pid": None, "acquired_at": None, "expires_at": None}
    _OURS.pop((str(lake.cfg.layout.root), run_id), None)
    _cas(lake, seen, empty)


@contextmanager
def held(lake: Lake, run_id: str, hours: float, force: bool = False) -> Iterator[Holder]:
    """The lease for the duration of a ``with`` block, released at its end (whatever happens)."""
    h = acquire(lake, run_id, hours, force)
    try:
        yield h
    finally:
        release(lake, run_id)


def _held_message(lake: Lake, h: Holder) -> str:
    return (
        f"the lake {lake.cfg.layout.root} is being written by pipeline run {h.run_id} (pid {h.pid} on {h.host}, "
        f"since {h.acquired_at:%Y-%m-%d %H:%M:%S} UTC, lease until {h.expires_at:%Y-%m-%d %H:%M:%S} UTC). Wait for it "
        "to finish; if that run is dead on another host, rerun with --break-lease."
    )


def _record_interrupted(lake: Lake, h: Holder, reason: str) -> None:
    """One ops.runs row (job pipeline, status interrupted) for a run that lost its lease."""
    from omicslake import __version__

    contract = load_contract("ops.runs")
    now = _now()
    row = {
        "run_id": h.run_id,
        "job": "pipeline",
        "env": lake.cfg.env,
        "config_hash": lake.cfg.digest(),
        "skip_key": None,
        "omicslake_version": __version__,
        "user": None,
        "started_at": h.acquired_at,
        "ended_at": now,
        "seconds": (now - h.acquired_at).total_seconds(),
        "status": "interrupted",
        "error": f"the pipeline run stopped before its end and lost its lease: {reason}",
        "inputs": [],
        "outputs": [],
        "files": [],
        "models": [],
        "metrics": {},
    }
    df = lake.spark.createDataFrame([tuple(row[c] for c in contract.names)], contract.struct())
    # one transaction per lost holder: a run retried and killed twice leaves two rows
    attempt = f"{h.run_id}:interrupted:{h.host}:{h.pid}:{h.acquired_at:%Y%m%dT%H%M%S%f}"
    Lake(lake.spark, lake.cfg, run_id=attempt).write(df, "ops.runs", mode="append", merge_schema=True)
    # what the run left open in MLflow (a train killed inside its MLflow run): closed, its versions tagged
    try:
        from omicslake.ml.tracking import close_interrupted

        ran = lake.read("ops.runs").where((F.col("run_id") == h.run_id) & (F.col("status") == "succeeded"))
        finished = {r.job for r in ran.select("job").distinct().collect()}
        closed = close_interrupted(lake.cfg, h.run_id, finished)
        if closed:
            log.info(
                "MLflow runs of the interrupted run %s closed and their model versions tagged: %d",
                h.run_id,
                len(closed),
            )
    except Exception as e:  # noqa: BLE001 - the takeover stands; MLflow's state is reported, not fatal
        log.warning("could not close the MLflow runs of the interrupted run %s: %s", h.run_id, type(e).__name__)
