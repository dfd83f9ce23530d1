"""Report sections on the lake's own records: pipeline runs (ops.runs), data quality
(ops.dq_results) and quarantine counts by rule."""

from __future__ import annotations

import html
from collections.abc import Sequence

from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.report.render import Section, table


def runs(lake: Lake) -> Section:
    """The "Pipeline runs" section: the 40 latest rows of ops.runs, newest first; nothing when the table is absent."""
    if not lake.exists("ops.runs"):
        return Section()
    rows = (
        lake.read("ops.runs")
        .orderBy(F.col("started_at").desc())
        .limit(40)
        .select("run_id", "job", "status", F.round("seconds", 1).alias("seconds"), "started_at", "error")
        .collect()
    )
    return Section(
        "<h2>Pipeline runs</h2>" + table(rows, ["started_at", "run_id", "job", "status", "seconds", "error"]),
        {"runs": len(rows)},
    )


def data_quality(lake: Lake) -> Section:
    """The "Data quality" section: the expectation results in ops.dq_results of the run that checked last;
    nothing when the table is absent."""
    if not lake.exists("ops.dq_results"):
        return Section()
    dq = lake.read("ops.dq_results")
    last = dq.agg(F.max_by("run_id", "checked_at")).first()[0]  # type: ignore[index]
    rows = dq.where(F.col("run_id") == last).orderBy("table_name", "expectation").collect()
    return Section(
        f"<h2>Data quality</h2><p>Expectations of run {html.escape(str(last))}.</p>"
        + table(rows, ["table_name", "expectation", "action", "rows_checked", "rows_failed", "outcome"]),
        {"dq_rows": len(rows)},
    )


def quarantine(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Quarantine" section: rows per rule of each ``quarantine.*`` table among ``tables`` (the lake's table
    names); nothing when no quarantine table has a row."""
    q = []
    for name in tables:
        if name.startswith("quarantine."):
            for r in lake.read(name).groupBy("rule").count().orderBy("rule").collect():  # no rows when empty
                q.append({"table": name, "rule": r["rule"], "rows": r["count"]})
    if not q:
        return Section()
    return Section("<h2>Quarantine</h2>" + table(q, ["table", "rule", "rows"]), {"quarantine_rules": len(q)})


def maintenance(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Tables" section: each table's data files and size after its latest maintain run (and before it), from
    ops.table_maintenance; nothing when maintain never ran."""
    if "ops.table_maintenance" not in tables:
        return Section()
    latest = (
        lake.read("ops.table_maintenance")
        .groupBy("table_name")
        .agg(F.max_by(F.struct("*"), "maintained_at").alias("m"))
        .select("m.*")
        .orderBy("table_name")
        .collect()
    )
    rows = [
        {
            "table": r["table_name"],
            "maintained": f"{r['maintained_at']:%Y-%m-%d %H:%M}",
            "done": r["optimized"] + (f" by {', '.join(r['zorder_by'])}" if r["zorder_by"] else ""),
            "files before": r["files_before"],
            "files": r["files_after"],
            "MB": round(r["bytes_after"] / 1e6, 2),
            "stored files": r["stored_files_after"],
            "retention h": r["vacuum_retention_hours"],
        }
        for r in latest
    ]
    cols = ["table", "maintained", "done", "files before", "files", "MB", "stored files", "retention h"]
    return Section(
        "<h2>Tables</h2><p>Data files and size of each table's current version after its latest maintain run "
        "(OPTIMIZE, VACUUM); stored files count every version's files kept for time travel.</p>" + table(rows, cols),
        {"maintained_tables": len(rows)},
    )
