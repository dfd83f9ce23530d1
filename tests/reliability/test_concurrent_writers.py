"""Two writers on one table at once (issue 15): a job overwriting a table while the maintain job
compacts it in another process. Delta's optimistic concurrency lets one commit win; the loser's
conflict is retried per ``lake.conflict_retries`` or reported naming the table, the table stays
valid, and nothing is written twice.

The interleaving is forced, not timed: the overwrite's rows come through a Python UDF that marks
when it started (the write's transaction has read its snapshot by then) and then waits for a flag
file; the other writer commits in between, then the test raises the flag.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType

from omicslake.config import Config
from omicslake.errors import ConcurrentWriteError
from omicslake.io.delta import Lake

TABLE = "silver.concurrency_probe"


def _blocked_rows(spark: SparkSession, started: Path, flag: Path, n: int) -> Any:
    """n rows (id 0..n-1) computed by a UDF that touches ``started`` and then waits for ``flag``."""
    started_s, flag_s = str(started), str(flag)

    def gate(x: int) -> int:
        import os as _os
        import time as _time

        open(started_s, "a").close()
        deadline = _time.monotonic() + 180
        while not _os.path.exists(flag_s):
            if _time.monotonic() > deadline:
                raise TimeoutError("the test never raised its flag")
            _time.sleep(0.05)
        return x

    return spark.range(n, numPartitions=1).select(F.udf(gate, LongType())("id").alias("id"))


def _seed(lake: Lake, files: int) -> None:
    """The table with ``files`` small appends (one data file each): something for OPTIMIZE to compact."""
    for i in range(files):
        lake.write(lake.spark.range(i * 10, i * 10 + 10, numPartitions=1), TABLE, mode="append")


def _overwrite_in_thread(lake: Lake, df: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = lake.write(df, TABLE, mode="overwrite")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out["error"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    out["thread"] = t
    return out


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _ops(lake: Lake) -> list[str]:
    return [r.operation for r in lake._delta_table(TABLE).history().orderBy("version").collect()]  # noqa: SLF001


@pytest.fixture()
def probe_cfg(cfg: Config) -> Config:
    return cfg.replace(**{"lake.enforce_contracts": False})  # an ad-hoc table of the test's own


@pytest.mark.slow
def test_an_overwrite_that_loses_to_maintain_in_another_process_is_retried(
    spark: SparkSession, probe_cfg: Config, tmp_path: Path
) -> None:
    lake = Lake(spark, probe_cfg, run_id="writer", job="conform_probe")
    _seed(Lake(spark, probe_cfg, run_id="seed"), 4)
    started, flag = tmp_path / "started", tmp_path / "flag"
    job = _overwrite_in_thread(lake, _blocked_rows(spark, started, flag, 100))
    _wait_for(started)  # the overwrite has read its snapshot and is writing files
    maint = subprocess.run(
        [
            sys.executable,
            "-m",
            "omicslake.jobs.cli",
            "run",
            "maintain",
            "--run-id",
            "maint",
            *("--set", f"lake.root={probe_cfg.lake_root}"),
            *("--set", f"jobs.maintain.tables=[{TABLE}]"),
            *("--set", "jobs.maintain.vacuum=false"),
            *("--set", "spark.ui=false"),
            *("--set", "spark.driver_memory=1g"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert maint.returncode == 0, maint.stderr[-3000:]
    assert _ops(lake)[-1] == "OPTIMIZE"  # the other process committed first
    flag.touch()
    job["thread"].join(timeout=300)
    assert "error" not in job, job.get("error")
    # the overwrite lost Delta's check once, was written again on the new snapshot, and won
    assert [c for _, c in lake.conflicts] and all(t == TABLE for t, _ in lake.conflicts)
    assert all(c.startswith("Concurrent") for _, c in lake.conflicts)
    assert _ops(lake)[-2:] == ["OPTIMIZE", "WRITE"]
    table = lake.read(TABLE)
    assert table.count() == 100 and table.distinct().count() == 100  # counted from what was written
    assert {r.id for r in table.collect()} == set(range(100))


@pytest.mark.slow
def test_when_retries_run_out_the_conflict_is_named_and_the_table_is_the_winners(
    spark: SparkSession, probe_cfg: Config, tmp_path: Path
) -> None:
    from delta.tables import DeltaTable

    cfg = probe_cfg.replace(**{"lake.conflict_retries": 0})
    lake = Lake(spark, cfg, run_id="writer", job="conform_probe")
    _seed(Lake(spark, cfg, run_id="seed"), 3)
    seeded = sorted(r.id for r in lake.read(TABLE).collect())
    started, flag = tmp_path / "started", tmp_path / "flag"
    job = _overwrite_in_thread(lake, _blocked_rows(spark, started, flag, 7))
    _wait_for(started)
    DeltaTable.forPath(spark, lake.location(TABLE)).optimize().executeCompaction()  # the other writer, in this JVM
    won = lake.version(TABLE)
    flag.touch()
    job["thread"].join(timeout=300)
    err = job.get("error")
    assert isinstance(err, ConcurrentWriteError), err
    assert TABLE in str(err) and "Concurrent" in str(err) and "lake.conflict_retries = 0" in str(err)
    assert lake.version(TABLE) == won and _ops(lake)[-1] == "OPTIMIZE"
    assert sorted(r.id for r in lake.read(TABLE).collect()) == seeded  # nothing of the loser, nothing lost
