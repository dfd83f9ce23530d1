"""ops.ingested_files: the one list of every raw file landed in bronze, whatever its kind.

Ingest jobs know a file by its SHA-256 here. A file's rows are committed first and its ledger
row last, so a run killed in between leaves rows without a ledger row: the next run finds them
by the file's digest, deletes them (``discard_partial``) and ingests the file again whole.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import functions as F

from omicslake.contracts import load_contract
from omicslake.io.delta import Lake

log = logging.getLogger(__name__)
LEDGER = "ops.ingested_files"


def known(lake: Lake, table: str) -> set[str]:
    """Digests of the files already landed in ``table``."""
    if not lake.exists(LEDGER):
        return set()
    ledger = lake.read(LEDGER).where(F.col("table_name") == table)
    if "status" in ledger.columns:  # a failed file is tried again on the next run
        ledger = ledger.where(F.col("status").isNull() | (F.col("status") == "landed"))
    rows = ledger.select("file_sha256").distinct().collect()
    return {r[0] for r in rows}  # one row per file


def record(lake: Lake, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add ledger rows (in the column order of schemas/ops/ingested_files.yaml); idempotent."""
    if not rows:
        return
    contract = load_contract(LEDGER)
    df = lake.spark.createDataFrame(list(rows), contract.struct())
    # merge_schema: a ledger written before the status and error columns gains them
    lake.write(df, LEDGER, mode="merge", keys=list(contract.keys), merge_schema=True)


def row(
    table: str,
    source: str,
    path: str,
    digest: str,
    size: int,
    batch: str,
    rows: int,
    lines: int | None,
    rescued: int,
    run_id: str,
    now: dt.datetime,
    status: str = "landed",
    error: str | None = None,
) -> tuple[Any, ...]:
    """One ledger row in the contract's column order: a landed file with its bronze rows and text
    lines, or (``status="failed"``, rows 0) a refused one with the error that refused it."""
    return (table, source, path, digest, size, batch, rows, lines, rescued, run_id, now, status, error)


def failed_row(
    table: str, source: str, path: str, digest: str, size: int, batch: str, run_id: str, now: dt.datetime, error: str
) -> tuple[Any, ...]:
    """The ledger row of a refused file: no rows in bronze, status failed, its error (cut at 4,000 characters)."""
    return row(table, source, path, digest, size, batch, 0, None, 0, run_id, now, status="failed", error=error[:4000])


def failed_files(lake: Lake, table: str) -> list[dict[str, Any]]:
    """The files of ``table`` whose last attempt was refused: path, digest, error, run id."""
    if not lake.exists(LEDGER):
        return []
    df = lake.read(LEDGER)
    if "status" not in df.columns:
        return []
    rows = df.where((F.col("table_name") == table) & (F.col("status") == "failed")).collect()  # failed files only
    return [{"path": r.path, "file_sha256": r.file_sha256, "error": r.error, "run_id": r.run_id} for r in rows]


def discard_partial(lake: Lake, digest: str, tables: dict[str, str]) -> bool:
    """Delete the rows an interrupted run left for a file (table -> its digest column); True if any."""
    found = False
    for table, column in tables.items():
        if not lake.exists(table):
            continue
        current = lake.read(table)
        if column not in current.columns or not current.where(F.col(column) == digest).limit(1).count():
            continue
        log.warning(
            "%s: rows of file %s... left by an interrupted run; deleting them to ingest the file again",
            table,
            digest[:12],
        )
        lake.delete_where(table, F.col(column) == digest)
        lake.forget_transactions(table)  # a rerun of the same run id must write them again
        found = True
    return found
