"""A copy of a lake that is a lake of its own, for a test that changes a lake other tests read; and the
comparison of a table of two lakes, row for row."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any


def multiset_diff(a: Any, b: Any) -> dict[str, int]:
    """Rows of DataFrames a and b (the same columns) and the rows each has that the other lacks, counted
    with duplicates (what ``exceptAll`` both ways counts), in one Spark job: every distinct row with its
    count on each side. Keys: rows_a, rows_b, only_a, only_b."""
    from pyspark.sql import functions as F

    both = a.select(*a.columns, F.lit(1).alias("_a"), F.lit(0).alias("_b")).unionByName(
        b.select(*a.columns, F.lit(0).alias("_a"), F.lit(1).alias("_b"))
    )
    per_row = both.groupBy(*a.columns).agg(F.sum("_a").alias("n_a"), F.sum("_b").alias("n_b"))
    r = per_row.agg(
        F.sum("n_a").alias("rows_a"),
        F.sum("n_b").alias("rows_b"),
        F.sum(F.greatest(F.col("n_a") - F.col("n_b"), F.lit(0))).alias("only_a"),
        F.sum(F.greatest(F.col("n_b") - F.col("n_a"), F.lit(0))).alias("only_b"),
    ).first()
    return {k: int(r[k] or 0) for k in ("rows_a", "rows_b", "only_a", "only_b")}


def copy_lake(src: Path, dst: Path) -> Path:
    """Copy the lake at ``src`` to ``dst`` (which must not exist) and return ``dst``.

    Delta tables keep relative paths and the audit keeps ``<root>/`` paths, so the files copy as
    they are; MLflow's SQLite store (``mlflow/mlflow.db``) holds absolute artifact locations, which
    are moved to the copy, so that runs logged in the copy write their artifacts in the copy and
    never into ``src``."""
    shutil.copytree(src, dst)
    db = dst / "mlflow" / "mlflow.db"
    if not db.exists():
        return dst
    old, new = str(src).rstrip("/") + "/", str(dst).rstrip("/") + "/"
    with sqlite3.connect(db) as con:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for _, col, typ, *_ in con.execute(f"PRAGMA table_info('{table}')").fetchall():
                if any(t in typ.upper() for t in ("CHAR", "TEXT", "CLOB")):
                    con.execute(
                        f'UPDATE "{table}" SET "{col}" = replace("{col}", ?, ?) WHERE instr("{col}", ?) > 0',
                        (old, new, old),
                    )
        left = [
            loc for (loc,) in con.execute("SELECT artifact_location FROM experiments").fetchall() if old in (loc or "")
        ]
    assert not left, f"{db}: artifact locations still under {src}: {left}"
    return dst
