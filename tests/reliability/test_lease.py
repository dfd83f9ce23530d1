"""Two pipelines on one lake do not interleave silently (issue 15): the pipeline's lease.

Real Delta tables in the session's Spark; the race is two threads taking the lease at the same
moment (Delta's conflict check decides, as it would between two drivers)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import threading

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.io import lease
from omicslake.io.delta import Lake
from omicslake.pipeline import run_pipeline


def _plant(lake: Lake, run_id: str, pid: int, expires_in_hours: float, host: str | None = None) -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    seen = lease.current(lake)
    lease._cas(
        lake,
        seen,
        {
            "lease": lease.NAME,
            "run_id": run_id,
            "host": host or socket.gethostname(),
            "pid": pid,
            "acquired_at": now,
            "expires_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=expires_in_hours),
        },
    )


def _interrupted(lake: Lake) -> dict[str, str]:
    rows = lake.read("ops.runs").where(F.col("status") == "interrupted").collect()  # a few rows
    return {r.run_id: r.error for r in rows}


def test_a_held_lease_stops_a_second_pipeline_and_a_dead_holder_is_taken_over(spark: SparkSession, cfg: Config) -> None:
    lake = Lake(spark, cfg)
    a = lease.acquire(lake, "run-a", hours=1)
    assert a.run_id == "run-a" and lease.current(lake) == a
    with pytest.raises(lease.LeaseHeldError) as err:
        lease.acquire(lake, "run-b", hours=1)
    assert "run-a" in str(err.value) and "--break-lease" in str(err.value)
    # renewing a lease that is still ours and far from expiry writes nothing (one log listing per job)
    v = lake.version("ops.pipeline_lease")
    lease.renew(lake, "run-a", hours=1)
    assert lake.version("ops.pipeline_lease") == v
    # a pipeline on the same lake stops before its first job: nothing written, no audit row
    with pytest.raises(lease.LeaseHeldError):
        run_pipeline(spark, cfg, ["generate"], run_id="run-c")
    assert not lake.exists("ops.runs") or lake.read("ops.runs").where(F.col("run_id") == "run-c").count() == 0
    assert not lake.exists("bronze.synthea_patients")
    lease.release(lake, "run-a")
    assert lease.current(lake) is None
    lease.acquire(lake, "run-b", hours=1)
    lease.release(lake, "run-b")

    # a holder that ran here and whose process is gone (a killed pipeline): taken over, recorded
    gone = subprocess.Popen(["true"])
    gone.wait()
    _plant(lake, "run-killed", gone.pid, expires_in_hours=5)
    lease.acquire(lake, "run-d", hours=1)
    assert "run-killed" in _interrupted(lake) and "is gone" in _interrupted(lake)["run-killed"]
    lease.release(lake, "run-d")

    # a holder on another host: only expiry or --break-lease frees it
    _plant(lake, "run-elsewhere", 1, expires_in_hours=5, host="another-host.example")
    with pytest.raises(lease.LeaseHeldError):
        lease.acquire(lake, "run-e", hours=1)
    lease.acquire(lake, "run-e", hours=1, force=True)
    assert "broken by force" in _interrupted(lake)["run-elsewhere"]
    # a pipeline whose lease was broken learns it at its next job, not at the lease's expiry
    lease.acquire(Lake(spark, cfg), "run-breaker", hours=1, force=True)
    with pytest.raises(lease.LeaseHeldError, match="no longer held by run run-e"):
        lease.renew(lake, "run-e", hours=1)
    lease.acquire(lake, "run-e", hours=1, force=True)
    lease.release(lake, "run-e")
    _plant(lake, "run-expired", 1, expires_in_hours=-1, host="another-host.example")
    lease.acquire(lake, "run-f", hours=1)
    assert "expired" in _interrupted(lake)["run-expired"]
    lease.release(lake, "run-f")


def test_two_pipelines_starting_at_once_one_gets_the_lease(spark: SparkSession, cfg: Config) -> None:
    lake = Lake(spark, cfg)
    lease.release(lake, "nobody")  # no table yet: a no-op
    for round_ in range(3):
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def take(run_id: str, barrier: threading.Barrier = barrier, outcome: dict[str, str] = outcome) -> None:
            barrier.wait()
            try:
                lease.acquire(Lake(spark, cfg), run_id, hours=1)
                outcome[run_id] = "won"
            except lease.LeaseHeldError:
                outcome[run_id] = "refused"

        threads = [threading.Thread(target=take, args=(f"r{round_}-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome.values()) == ["refused", "won"], outcome
        winner = next(k for k, v in outcome.items() if v == "won")
        assert lease.current(lake).run_id == winner  # type: ignore[union-attr]
        lease.release(lake, winner)
    assert lake.read("ops.pipeline_lease").count() == 1  # one row, however many takers
