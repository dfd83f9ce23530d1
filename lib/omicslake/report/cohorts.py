"""Report section on the cohorts: Table 1 of each (gold.table1_<cohort>), aggregates only."""

from __future__ import annotations

import html
from collections.abc import Sequence

from omicslake.io.delta import Lake
from omicslake.report.render import Section, table


def table1(lake: Lake, tables: Sequence[str]) -> Section:
    """A "Table 1: <cohort>" section for each ``gold.table1_*`` among ``tables`` (the lake's table names), in
    that order: variable (and level), overall, by outcome, SMD. Counts ``table1`` (0 when there is none)."""
    names = [n for n in tables if n.startswith("gold.table1_")]
    parts = []
    for name in names:
        rows = lake.read(name).orderBy("row").collect()
        shown = [
            {
                "variable": r.variable if r.level is None else f"{r.variable}: {r.level}",
                "overall": r.overall,
                "outcome 0": r.outcome_0,
                "outcome 1": r.outcome_1,
                "SMD": "" if r.smd is None else f"{r.smd:.3f}",
            }
            for r in rows
        ]
        parts.append(
            f"<h2>Table 1: {html.escape(name.split('table1_', 1)[1])}</h2>"
            + table(shown, ["variable", "overall", "outcome 0", "outcome 1", "SMD"])
        )
    return Section("".join(parts), {"table1": len(names)})
