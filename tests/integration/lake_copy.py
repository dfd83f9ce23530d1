"""A copy of a lake that is a lake of its own, for a test that changes a lake other tests read."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path


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
