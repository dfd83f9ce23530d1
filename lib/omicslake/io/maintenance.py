"""Table maintenance: compaction (OPTIMIZE, optionally Z-ordered) and VACUUM of Delta tables.

Jobs append small files (an ingest per file, the ledger per batch); readers then open thousands of
them. ``optimize`` rewrites a table's current version into fewer, larger files (a Delta commit
whose operation is OPTIMIZE and that changes no row, so the pipeline does not rerun the jobs that
read the table: ``Lake.data_changed``). ``vacuum`` deletes the data files no version within the
retention needs; time travel to a version older than the retention then fails, so a retention
under Delta's default of 7 days is refused unless forced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from omicslake.errors import ConfigError
from omicslake.io.delta import Lake, check_identifier

log = logging.getLogger(__name__)
MIN_RETENTION_HOURS = 168.0


@dataclass(frozen=True)
class Outcome:
    """What maintenance did to one table (one row of ops.table_maintenance, without run and time)."""

    table_name: str
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    optimized: str
    zorder_by: list[str] | None
    files_removed: int
    vacuum_retention_hours: float | None
    stored_files_before: int | None
    stored_files_after: int | None
    seconds: float


def check_retention(hours: float, force: bool) -> None:
    """Refuse (ConfigError) a VACUUM retention under 7 days unless ``force``."""
    if hours < 0:
        raise ConfigError(f"jobs.maintain.retention_hours is {hours}; it must be >= 0")
    if hours < MIN_RETENTION_HOURS and not force:
        raise ConfigError(
            f"jobs.maintain.retention_hours is {hours:g}, under {MIN_RETENTION_HOURS:g} (7 days): VACUUM would delete "
            "files that readers still running, or a time travel within the week, need. Raise it, or set "
            "jobs.maintain.force_retention: true if you accept that"
        )


def zorder_columns(lake: Lake, name: str, columns: Sequence[str]) -> list[str]:
    """The Z-order columns for a table, checked: identifiers that are columns of the table (ConfigError
    naming the table and the column otherwise)."""
    have = set(lake.read(name).columns)
    out = []
    for c in columns:
        check_identifier(c, f"jobs.maintain.zorder column of {name}")
        if c not in have:
            raise ConfigError(f"jobs.maintain.zorder: {name} has no column {c!r}; its columns are {sorted(have)}")
        out.append(c)
    return out


def stored_files(lake: Lake, name: str) -> int | None:
    """Data files in a table's folder, of every version (what VACUUM may delete), through Hadoop's
    FileSystem (local or object store); None for a metastore table."""
    if lake.qualified(name):
        return None
    spark = lake.spark
    jvm = spark._jvm  # noqa: SLF001 - the Hadoop FileSystem is only reachable through py4j
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(lake.location(name))
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
    it = fs.listFiles(path, True)
    n = 0
    while it.hasNext():
        p = str(it.next().getPath().toString())
        if "/_delta_log/" not in p and p.endswith(".parquet"):
            n += 1
    return n


def maintain_table(
    lake: Lake,
    name: str,
    optimize: bool,
    zorder: Sequence[str],
    min_files: int,
    vacuum: bool,
    retention_hours: float,
    force_retention: bool,
) -> Outcome:
    """OPTIMIZE (Z-ordered by ``zorder`` when given) a table with at least ``min_files`` data files, then
    VACUUM it with ``retention_hours``; what it did, with files and bytes before and after."""
    t0 = time.monotonic()
    table = lake._delta_table(name)  # noqa: SLF001 - the Lake resolves folder or metastore table
    before = lake.detail(name)
    stored_before = stored_files(lake, name)
    cols = zorder_columns(lake, name, zorder) if zorder else []
    removed = 0
    if not optimize:
        how = "off"
    elif before["files"] < min_files and not cols:
        how = "skipped"
    else:
        builder = table.optimize
        metrics = lake._retry(  # noqa: SLF001 - the lake's one conflict policy
            name,
            "OPTIMIZE",
            lambda: (builder().executeZOrderBy(*cols) if cols else builder().executeCompaction()).first(),
        )
        removed = int(metrics["metrics"]["numFilesRemoved"]) if metrics is not None else 0
        how = "zorder" if cols else "compacted"
    if vacuum:
        check_retention(retention_hours, force_retention)
        conf = lake.spark.conf
        if retention_hours < MIN_RETENTION_HOURS:
            conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        try:
            lake._retry(name, "VACUUM", lambda: table.vacuum(retention_hours))  # noqa: SLF001
        finally:
            conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    after = lake.detail(name)
    return Outcome(
        table_name=name,
        version_before=int(before["version"]),
        version_after=int(after["version"]),
        files_before=before["files"],
        files_after=after["files"],
        bytes_before=before["bytes"],
        bytes_after=after["bytes"],
        optimized=how,
        zorder_by=cols or None,
        files_removed=removed,
        vacuum_retention_hours=retention_hours if vacuum else None,
        stored_files_before=stored_before,
        stored_files_after=stored_files(lake, name),
        seconds=round(time.monotonic() - t0, 3),
    )
