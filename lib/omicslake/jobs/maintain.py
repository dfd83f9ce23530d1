"""Job maintain: compact (OPTIMIZE, Z-order where configured) and VACUUM the lake's Delta tables.

Outside the pipeline (spec ``pipeline=False``): it runs on its own schedule (the bundle's
maintenance job), or as ``omicslake run maintain``. Its commits change no row, so the pipeline's
next run skips the jobs that read the maintained tables (``Lake.data_changed``). A retention under
7 days is refused unless ``jobs.maintain.force_retention``. Each table's outcome (files and bytes
before and after, what was done) goes to ``ops.table_maintenance`` and the report's "Tables"
section.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.errors import ConfigError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="maintain",
    description="Compact (OPTIMIZE, Z-order where configured) and VACUUM the lake's Delta tables -> ops.table_maintenance; "
    "runs on its own schedule, outside the pipeline.",
    config=("jobs.maintain",),
    always_run=True,
    pipeline=False,
)
NAME = SPEC.name
log = logging.getLogger(__name__)
OUT = "ops.table_maintenance"


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.contracts import load_contract
    from omicslake.io.maintenance import check_retention, maintain_table

    c = cfg.jobs.maintain
    if c.vacuum:
        check_retention(c.retention_hours, c.force_retention)  # before touching any table
    names = list(c.tables) or [n for n in lake.names() if n != OUT]
    missing = [n for n in names if not lake.exists(n)]
    if missing:
        raise ConfigError(f"jobs.maintain.tables: no such table(s) {missing}")
    unknown = [t for t in c.zorder if t not in names]
    if unknown:
        raise ConfigError(f"jobs.maintain.zorder names table(s) {unknown} that are not maintained ({names})")
    rows = []
    for i, name in enumerate(names, 1):
        o = maintain_table(
            lake, name, c.optimize, c.zorder.get(name, ()), c.min_files, c.vacuum, c.retention_hours, c.force_retention
        )
        log.info(
            "table %d of %d: %s %s, %d -> %d files (%.1f s)",
            i,
            len(names),
            name,
            o.optimized,
            o.files_before,
            o.files_after,
            o.seconds,
        )
        rows.append(
            {
                **dataclasses.asdict(o),
                "run_id": lake.run_id,
                "maintained_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            }
        )
    contract = load_contract(OUT)
    df = spark.createDataFrame([tuple(r[n] for n in contract.names) for r in rows], contract.struct())
    lake.write(df, OUT, mode="append")
    return {
        "tables": len(rows),
        "optimized": sum(r["optimized"] in ("compacted", "zorder") for r in rows),
        "files_before": sum(r["files_before"] for r in rows),
        "files_after": sum(r["files_after"] for r in rows),
        "conflicts_retried": len(lake.conflicts),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
