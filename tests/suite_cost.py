"""What share of a test run goes to starting Spark sessions (issue #14's suite cost; target < 5 %).

Loaded by tests/conftest.py when ``OMICSLAKE_SUITE_COST`` is set (``1``: write
bench/results/suite_cost.json; a path ending in .json: write there):

    OMICSLAKE_SUITE_COST=1 ./dev test                          # the default suite, two workers
    OMICSLAKE_SUITE_COST=/tmp/cost.json .venv/bin/python -m pytest tests/unit -n 2

The controlling pytest process points ``omicslake.session.SESSION_TIMES_ENV`` at a temporary file
before the workers start; every ``build_session`` and ``stop_session`` in every process that
inherits it (xdist workers, the CLI and spark-submit drivers the tests start) appends its seconds
there. At the end the controller sums them against the run's wall time times its workers.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def summarize(events: list[dict[str, Any]], wall_seconds: float, workers: int) -> dict[str, Any]:
    """Totals of the session events of one run: sessions started (new ones, not reused), seconds spent
    starting them (Spark, and Hail on them whenever it was initialised) and stopping them, and the
    start share of the run's worker time (wall x workers) and of its wall time."""
    starts = [e for e in events if e.get("event") == "start"]
    created = [e for e in starts if e.get("created")]
    hail_s = sum(float(e["seconds"]) for e in events if e.get("event") == "hail")  # Hail on a session, also later
    start_s = sum(float(e["seconds"]) for e in starts) + hail_s
    stop_s = sum(float(e["seconds"]) for e in events if e.get("event") == "stop")
    return {
        "sessions_started": len(created),
        "sessions_reused": len(starts) - len(created),
        "processes": len({e["pid"] for e in events}),
        "session_start_seconds": round(start_s, 2),  # Spark sessions and Hail on them
        "hail_init_seconds": round(hail_s, 2),
        "session_stop_seconds": round(stop_s, 2),
        "suite_seconds": round(wall_seconds, 2),
        "workers": workers,
        "share_of_worker_time": round(start_s / (wall_seconds * workers), 4) if wall_seconds > 0 else None,
        "share_of_wall_time": round(start_s / wall_seconds, 4) if wall_seconds > 0 else None,
        "target": 0.05,
    }


class SuiteCost:
    """The plugin: the controller's clock and the session-times file."""

    def __init__(self, config: pytest.Config, target: str) -> None:
        from omicslake.session import SESSION_TIMES_ENV

        self.config = config
        self.out = Path(target) if target.endswith(".json") else REPO / "bench" / "results" / "suite_cost.json"
        self.controller = not hasattr(config, "workerinput")  # an xdist worker has workerinput
        self.t0 = time.monotonic()
        if self.controller:
            fd, path = tempfile.mkstemp(prefix="omicslake-session-times-", suffix=".jsonl")
            os.close(fd)
            os.environ[SESSION_TIMES_ENV] = path  # inherited by the workers and every process they start
            self.times = Path(path)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the summary (controller only: the workers' sessions are in the shared file)."""
        if not self.controller:
            return
        from bench.common import machine

        wall = time.monotonic() - self.t0
        events = [json.loads(line) for line in self.times.read_text().splitlines() if line.strip()]
        workers = int(getattr(self.config.option, "numprocesses", 0) or 1)
        result = {
            "name": "suite_cost",
            "args": " ".join(self.config.invocation_params.args),
            "tests_collected": session.testscollected,
            "tests_failed": session.testsfailed,
            "machine": machine(),
            **summarize(events, wall, workers),
            "events": events,
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(result, indent=1) + "\n")
        self.times.unlink(missing_ok=True)
        share = result["share_of_worker_time"]
        print(
            f"\n[suite cost] {result['sessions_started']} Spark sessions started in {result['session_start_seconds']:.0f} s "
            f"of {wall:.0f} s x {workers} worker(s): {share:.1%} of worker time (target < 5 %) -> {self.out}"
        )
