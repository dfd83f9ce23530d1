"""Fault points: where the reliability tests kill a job, deterministically.

The lake's commit path calls ``point(label)`` before and after each Delta commit (labels ``before
commit <table> (<job>)`` and ``after commit <table> (<job>)``; the job's audit row is its commit
to ``ops.runs``). Normally that does nothing. With
``OMICSLAKE_FAULT_LOG=<file>`` each point reached appends ``<n>\\t<label>`` to the file (so a clean
run lists the points of a job). With ``OMICSLAKE_FAULT_KILL_AT`` set, the process group (the Python
driver, its JVM and Python workers: nothing runs a ``finally``) gets SIGKILL:

- ``<n>``: at the n-th point reached;
- ``<label>``: at the first point with that label;
- ``during commit <table> (<job>)``: while that table's write is under way: from its ``before commit``
  point, a thread watches the table's folder and kills as soon as a new data file of the write
  appears there, before the write's commit.

tests/reliability/test_kill_anywhere.py kills jobs at points of a clean run this way, reruns them
and compares the lake with a clean run's.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

_count = 0


def _kill() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _watch(folder: str) -> None:
    """Kill as soon as a data file newer than now appears under a local table folder."""
    root, since = Path(folder), time.time()

    def loop() -> None:
        while True:
            if root.is_dir():
                for p in root.rglob("*.parquet"):
                    if "_delta_log" not in p.parts and p.stat().st_mtime >= since - 0.001:
                        _kill()
            time.sleep(0.005)

    threading.Thread(target=loop, daemon=True).start()


def point(label: str, location: str | None = None) -> None:
    """Mark a fault point (see the module docstring); a no-op unless the fault variables are set.
    ``location``: the table's folder, for a ``during commit`` kill."""
    global _count
    log_path = os.environ.get("OMICSLAKE_FAULT_LOG")
    kill_at = os.environ.get("OMICSLAKE_FAULT_KILL_AT")
    if not (log_path or kill_at):
        return
    _count += 1
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"{_count}\t{label}\n")
            f.flush()
            os.fsync(f.fileno())
    if not kill_at:
        return
    if kill_at == label or (kill_at.isdigit() and _count == int(kill_at)):
        _kill()
    if kill_at.startswith("during commit ") and label == "before commit " + kill_at[len("during commit ") :]:
        if location and "://" not in location:
            _watch(location)
