"""Lake I/O: the only module that knows where tables live and how they are written.

Tables are addressed as ``<layer>.<table>``. With ``lake.catalog`` unset a table is the Delta
folder ``<lake.root>/<layer>/<table>`` (a local folder or an object-store URI, built by
omicslake.io.layout); with it set, the metastore table ``<catalog>.<schema>.<table>`` (Unity
Catalog on Databricks). Whether a table exists is Delta's answer (a committed version), not a look
at the folder.

Every write of a job run carries a Delta transaction identifier (txnAppId = run, job and table,
txnVersion = the write's sequence number within the run), so running the same run again —
after a crash, or by a scheduler's retry — commits nothing twice.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from omicslake.config import Config
from omicslake.errors import ConcurrentWriteError, IdentifierError, TableNotFoundError
from omicslake.io import faults

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
WriteMode = Literal["append", "overwrite", "merge"]
ABSENT = -1  # the version recorded for an optional input a job found absent (Lake.exists)
# Delta operations that rewrite or delete files without changing a table's rows
DATA_NEUTRAL = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})


def concurrent_conflict(exc: BaseException) -> str | None:
    """The name of Delta's optimistic-concurrency conflict in an exception (ConcurrentAppendException,
    ConcurrentDeleteReadException, ...), or None when it is another error."""
    text = f"{type(exc).__name__}: {str(exc)[:4000]}"
    m = re.search(r"(Concurrent\w*Exception|ProtocolChangedException|MetadataChangedException)", text)
    return m.group(1) if m else None


def check_identifier(name: str, what: str = "identifier") -> str:
    """name itself if it is a plain SQL identifier; IdentifierError otherwise."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise IdentifierError(
            f"{what} {name!r} is not a plain identifier (letters, digits and _, not starting "
            "with a digit, at most 128 characters); rename it in your config or schema"
        )
    return name


@dataclass(frozen=True)
class WriteResult:
    """One table write of a run: the table name, its Delta version after the write, rows written (0 when
    skipped), the write mode, and whether the run had already committed it (skipped)."""

    table: str
    version: int
    rows: int
    mode: str
    skipped: bool = False  # the same run had already committed this write


@dataclass
class Lake:
    """A handle on the lake for one job run: it resolves names and records reads and writes."""

    spark: SparkSession
    cfg: Config
    run_id: str = "adhoc"
    job: str = ""  # the job writing (part of each write's transaction id)
    reads: dict[str, int] = field(default_factory=dict)
    writes: list[WriteResult] = field(default_factory=list)
    # Inputs that are not tables, recorded for the pipeline's skip decision (ops.runs.files, .models):
    # (path, sha256, "read" | "wrote") and (registered model, how it was asked for, version).
    files: dict[tuple[str, str], str] = field(default_factory=dict)
    models: dict[tuple[str, str], str] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (table, Delta's conflict) of each retried write
    _seq: dict[str, int] = field(default_factory=dict)
    _fresh: set[str] = field(default_factory=set)

    # ---------------------------------------------------------------------------- non-table inputs
    def use_file(self, path: Path | str, role: str = "read") -> str:
        """Record a file this run reads (or wrote, role="wrote") with its SHA-256; returns the digest.
        Paths under the lake root are kept relative to it, so a copied lake is the same lake."""
        from omicslake.io.files import is_remote, sha256

        p: Path | str = path if is_remote(path) else Path(path).expanduser().resolve()
        digest = sha256(p, self.cfg)
        self.files[(self.portable(p), role)] = digest
        return digest

    def use_model(self, name: str, ref: str, version: str | int) -> None:
        """Record a registered model version this run loads (ref: "version 3" or "alias champion")."""
        self.models[(name, ref)] = str(version)

    def portable(self, path: Path | str) -> str:
        """path relative to the lake root when it lies under it (as "<root>/..."), else as given."""
        return self.cfg.layout.portable(path)

    def locate(self, portable: str) -> str:
        """The inverse of portable(): a local path or URI."""
        return self.cfg.layout.resolve(portable)

    # ---------------------------------------------------------------------------- naming
    def split(self, name: str) -> tuple[str, str]:
        """``"<layer>.<table>"`` -> (layer, table). TableNotFoundError for a name without a dot or an unknown
        layer, IdentifierError for a table name that is not a plain identifier."""
        layer, dot, table = name.partition(".")
        if not dot:
            raise TableNotFoundError(
                f"table name {name!r} must be <layer>.<table>, with layer one of {list(self.cfg.lake.layers)}"
            )
        check_identifier(table, f"table name in {name!r}")
        if layer not in self.cfg.lake.layers:
            raise TableNotFoundError(
                f"unknown layer {layer!r} in table name {name!r}; layers are {list(self.cfg.lake.layers)}"
            )
        return layer, table

    def location(self, name: str) -> str:
        """Where the table's Delta folder is: a local path or a URI under lake.root."""
        layer, table = self.split(name)
        return self.cfg.layout.table(layer, table)

    def path(self, name: str) -> Path:
        """location() as a local Path: a local lake root only (ConfigError for an object-store root,
        where location() is the one to use)."""
        self.cfg.layout.local_root()
        return Path(self.location(name))

    def qualified(self, name: str) -> str | None:
        """catalog.schema.table when the lake lives in a metastore, else None."""
        layer, table = self.split(name)
        if not self.cfg.lake.catalog:
            return None
        schema = check_identifier(self.cfg.lake.schemas.get(layer, layer), f"schema for layer {layer}")
        catalog = check_identifier(self.cfg.lake.catalog, "lake.catalog")
        return f"`{catalog}`.`{schema}`.`{table}`"

    def _delta_table(self, name: str) -> DeltaTable:
        fq = self.qualified(name)
        return DeltaTable.forName(self.spark, fq) if fq else DeltaTable.forPath(self.spark, self.location(name))

    def exists(self, name: str) -> bool:
        """Whether the table has a committed Delta version (with lake.catalog: whether the metastore has it);
        a _delta_log left without a commit is no table. A job asks this of its optional inputs, so an absent
        table is recorded as an input at version -1: when it appears later, the pipeline reruns the job
        (``pipeline.skip_decision``), instead of skipping it forever as a job that read nothing of it."""
        found = self._exists(name)
        if not found and name not in self.reads:
            self.reads[name] = ABSENT
        return found

    def read_optional(self, name: str) -> DataFrame | None:
        """read(name) when the table exists, else None (recorded as an absent input, see exists())."""
        return self.read(name) if self.exists(name) else None

    def _exists(self, name: str) -> bool:
        fq = self.qualified(name)
        if fq:
            return bool(self.spark.catalog.tableExists(fq.replace("`", "")))
        # Delta's strict check: a _delta_log with no commit (left by a failed first write) is no table.
        return bool(DeltaTable.isDeltaTable(self.spark, self.location(name)))

    def version(self, name: str) -> int | None:
        """The table's latest Delta version, None when it does not exist.

        A path table's version is the highest ``<version>.json`` commit file in its ``_delta_log``
        (one listing, as Delta itself finds the latest commit; a commit file appears whole, by rename
        or put-if-absent); asking Delta's history instead ran a Spark job per call, and every read
        and write asks. A catalog table asks its history."""
        if not self.qualified(name):
            return self._log_version(name)
        if not self._exists(name):
            return None
        row = self._delta_table(name).history(1).select("version").first()
        return int(row[0]) if row else None

    def _log(self, name: str) -> tuple[Any, Any] | None:
        """(Hadoop FileSystem, _delta_log path) of a path table; None when the folder is absent."""
        location = self.location(name).rstrip("/") + "/_delta_log"
        if "://" not in location and not Path(location).is_dir():
            return None
        jvm = self.spark._jvm  # noqa: SLF001 - the Hadoop FileSystem is only reachable through py4j
        assert jvm is not None
        hpath = jvm.org.apache.hadoop.fs.Path(location)
        fs = hpath.getFileSystem(self.spark._jsc.hadoopConfiguration())  # noqa: SLF001
        return (fs, hpath) if fs.exists(hpath) else None

    def _log_version(self, name: str) -> int | None:
        """The highest commit version in a path table's _delta_log, None without a commit."""
        log_dir = self._log(name)
        return None if log_dir is None else _latest_commit(*log_dir)

    # ---------------------------------------------------------------------------- reading
    def read(self, name: str, version: int | None = None) -> DataFrame:
        """The table at its current (or the given) version, pinned: later commits don't leak in."""
        if not self._exists(name):
            raise TableNotFoundError(
                f"table {name} does not exist (looked at {self.qualified(name) or self.location(name)}); "
                "run the job that writes it first, e.g. `omicslake pipeline`"
            )
        pinned = self.version(name) if version is None else version
        assert pinned is not None
        fq = self.qualified(name)
        reader = self.spark.read.format("delta").option("versionAsOf", pinned)
        df = reader.table(fq) if fq else reader.load(self.location(name))
        self.reads[name] = pinned
        return df

    # ---------------------------------------------------------------------------- writing
    def write(
        self,
        df: DataFrame,
        name: str,
        mode: WriteMode = "append",
        keys: Sequence[str] = (),
        partition_by: Sequence[str] = (),
        merge_schema: bool = False,
    ) -> WriteResult:
        """Write df to name; idempotent within this run (see module docstring)."""
        for col in [*keys, *partition_by]:
            check_identifier(col, f"column for {name}")
        if self.cfg.lake.enforce_contracts:
            # Every table has a contract (schemas/<layer>/<table>.yaml or a template); a column it
            # does not declare, or of another type, fails here, before anything is written.
            from omicslake.contracts import load_contract

            load_contract(name).validate(df.schema)
        if mode == "merge" and not keys:
            raise ValueError(f"merge into {name} needs keys")
        seq = self._seq.get(name, 0)
        self._seq[name] = seq + 1
        # The job is part of the id: two jobs of one pipeline run writing the same table (both
        # ingests write ops.ingested_files) are different transactions, not a rerun of one.
        app_id = f"omicslake:{self.run_id}:{self.job + ':' if self.job else ''}{name}"
        if name in self._fresh:
            app_id += ":" + uuid.uuid4().hex  # see forget_transactions
        before: int | None = None

        def commit() -> None:
            nonlocal before
            before = self.version(name)  # read per attempt: after a conflict, the other writer's commit is not ours
            self._commit(df, name, mode, keys, partition_by, merge_schema, app_id, seq, before)

        self._retry(name, "write", commit)  # Delta's conflicts retried, per lake.conflict_retries
        after, metrics = self._last_commit(name)
        skipped = after == before
        rows = 0 if skipped else _rows_from(metrics)
        result = WriteResult(name, after, rows, mode, skipped)
        if skipped:
            log.info("%s: run %s already committed this write; nothing written", name, self.run_id)
        self.writes.append(result)
        return result

    def _commit(
        self,
        df: DataFrame,
        name: str,
        mode: WriteMode,
        keys: Sequence[str],
        partition_by: Sequence[str],
        merge_schema: bool,
        app_id: str,
        seq: int,
        before: int | None,
    ) -> None:
        where = f"{name} ({self.job})" if self.job else name  # the job names the point: every job writes ops.runs
        faults.point(f"before commit {where}", None if self.qualified(name) else self.location(name))
        if mode == "merge" and before is not None:
            self._merge(df, name, keys, app_id, seq, merge_schema)
        else:
            writer = (
                df.write.format("delta")
                .mode("overwrite" if mode in ("overwrite", "merge") else "append")
                .option("txnAppId", app_id)
                .option("txnVersion", seq)
            )
            if merge_schema:
                # append: add new columns; overwrite: the new schema replaces the old (a gold
                # table whose columns come from config, e.g. features, may lose columns too)
                writer = writer.option("overwriteSchema" if mode == "overwrite" else "mergeSchema", "true")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            fq = self.qualified(name)
            if fq:
                writer.saveAsTable(fq)
            else:
                writer.save(self.location(name))
        faults.point(f"after commit {where}")

    def _merge(self, df: DataFrame, name: str, keys: Sequence[str], app_id: str, seq: int, merge_schema: bool) -> None:
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        conf = self.spark.conf
        conf.set("spark.databricks.delta.write.txnAppId", app_id)
        conf.set("spark.databricks.delta.write.txnVersion", str(seq))
        if merge_schema:
            conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
        try:
            (
                self._delta_table(name)
                .alias("t")
                .merge(df.alias("s"), cond)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            conf.unset("spark.databricks.delta.write.txnAppId")
            conf.unset("spark.databricks.delta.write.txnVersion")
            if merge_schema:
                conf.unset("spark.databricks.delta.schema.autoMerge.enabled")

    def compare_and_set(self, df: DataFrame, name: str, on: str, still: Column) -> None:
        """MERGE ``df`` into ``name`` on column ``on``: a row with no match is inserted, a matched
        row is updated only where ``still`` (a condition on the table's row, alias ``t``) holds.
        The contract is checked as in write(). No transaction id and no retry: a compare-and-set
        that loses a race must say so (Delta's concurrent-modification error goes to the caller),
        and the caller reads the row again to see who won (the pipeline lease, io/lease.py)."""
        check_identifier(on, f"column for {name}")
        if self.cfg.lake.enforce_contracts:
            from omicslake.contracts import load_contract

            load_contract(name).validate(df.schema)
        (
            self._delta_table(name)
            .alias("t")
            .merge(df.alias("s"), F.col(f"t.{on}") == F.col(f"s.{on}"))
            .whenMatchedUpdate(condition=still, set={c: F.col(f"s.`{c}`") for c in df.columns})
            .whenNotMatchedInsertAll()
            .execute()
        )

    def restore(self, name: str, version: int) -> None:
        """Put a table back to an earlier version (a new commit with that version's content)."""
        log.warning("%s: restoring version %d", name, version)
        self._retry(name, "RESTORE", lambda: self._delta_table(name).restoreToVersion(version))

    @contextmanager
    def undo_on_error(self, tables: Iterable[str]) -> Iterator[dict[str, int | None]]:
        """A block whose table writes are undone if it raises: each of ``tables`` at a new version
        then is restored to its version from before the block, and one the block created is emptied
        (a table's first version cannot be undone); then the error goes on. Yields the versions
        before the block (None: no table)."""
        before = {t: self.version(t) for t in tables}
        try:
            yield before
        except BaseException:
            for t, v in before.items():
                try:
                    if self.version(t) not in (None, v):
                        self.truncate(t) if v is None else self.restore(t, v)
                except Exception:  # the block's error is the one to report; this one is logged
                    log.exception("%s: could not be put back to version %s", t, v)
            raise

    def delete_where(self, name: str, condition: Any) -> None:
        """Delete the rows matching a condition (a Column)."""
        self._retry(name, "DELETE", lambda: self._delta_table(name).delete(condition))

    def forget_transactions(self, name: str) -> None:
        """Later writes to name in this run are new transactions, not reruns: for a table whose rows
        from an earlier attempt of the same run were deleted (they would otherwise be skipped as
        already committed)."""
        self._fresh.add(name)

    def truncate(self, name: str) -> None:
        """Delete every row of a table (a new commit; time travel keeps the old rows)."""
        log.warning("%s: deleting every row", name)
        self._retry(name, "DELETE", lambda: self._delta_table(name).delete())

    def _retry(self, name: str, what: str, fn: Any) -> Any:
        """fn() with Delta's concurrency conflicts (another writer, e.g. maintain's OPTIMIZE) retried
        lake.conflict_retries times, then ConcurrentWriteError naming the table."""
        retries = self.cfg.lake.conflict_retries
        for attempt in range(retries + 1):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - Delta's conflicts arrive as Java exceptions
                conflict = concurrent_conflict(exc)
                if conflict is None:
                    raise
                self.conflicts.append((name, conflict))
                if attempt == retries:
                    raise ConcurrentWriteError(
                        f"{name}: {what} lost to another writer ({conflict}) {attempt + 1} time(s) "
                        f"(lake.conflict_retries = {retries}); the table is as the other writer left it. Rerun the job"
                    ) from None
                log.warning("%s: %s met %s; trying again (%d of %d)", name, what, conflict, attempt + 1, retries)
                time.sleep(min(0.5 * 2**attempt, 8.0))
        raise AssertionError("unreachable")

    def _last_commit(self, name: str) -> tuple[int, dict[str, str]]:
        """Version and operation metrics of the latest commit: for a path table, the ``commitInfo``
        action of its latest commit file (no Spark job); for a catalog table, Delta's history."""
        log_dir = None if self.qualified(name) else self._log(name)
        version = None if log_dir is None else _latest_commit(*log_dir)
        if log_dir is None or version is None:
            row = self._delta_table(name).history(1).select("version", "operationMetrics").first()
            assert row is not None
            return int(row[0]), dict(row[1] or {})
        fs, hpath = log_dir
        jvm = self.spark._jvm  # noqa: SLF001
        assert jvm is not None
        stream = fs.open(jvm.org.apache.hadoop.fs.Path(hpath, f"{version:020d}.json"))
        try:
            text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()
        for line in text.splitlines():
            action = json.loads(line) if line.strip() else {}
            if "commitInfo" in action:
                metrics = action["commitInfo"].get("operationMetrics") or {}
                return version, {str(k): str(v) for k, v in metrics.items()}
        return version, {}

    def data_changed(self, name: str, since: int) -> bool:
        """Whether any commit after version ``since`` changed the table's rows: False when every later
        commit is maintenance (OPTIMIZE, VACUUM), which rewrites files but not data."""
        later = self._delta_table(name).history().where(f"version > {int(since)}").select("operation").collect()
        return any(r[0] not in DATA_NEUTRAL for r in later)

    def detail(self, name: str) -> dict[str, Any]:
        """Version, data files and bytes of a table's current version (Delta's DESCRIBE DETAIL: the log
        only, no data read)."""
        row = self._delta_table(name).detail().select("numFiles", "sizeInBytes").first()
        assert row is not None
        return {"version": self.version(name), "files": int(row[0] or 0), "bytes": int(row[1] or 0)}

    # ---------------------------------------------------------------------------- listing
    def names(self) -> list[str]:
        """``<layer>.<table>`` of every Delta table in the lake (no data is read)."""
        out = []
        for layer in self.cfg.lake.layers:
            if self.cfg.lake.catalog:
                schema = self.cfg.lake.schemas.get(layer, layer)
                try:
                    names = [t.name for t in self.spark.catalog.listTables(f"{self.cfg.lake.catalog}.{schema}")]
                except AnalysisException:
                    continue
            else:
                names = sorted(n for n in self._folders(self.cfg.layout.uri(layer)) if self.exists(f"{layer}.{n}"))
            out += [f"{layer}.{table}" for table in names]
        return out

    def tables(self) -> list[tuple[str, int, int]]:
        """(name, version, rows) for every Delta table in the lake: one count per table."""
        out = []
        for full in self.names():
            version = self.version(full)
            fq = self.qualified(full)
            reader = self.spark.read.format("delta")
            df = reader.table(fq) if fq else reader.load(self.location(full))
            out.append((full, version if version is not None else -1, df.count()))
        return out

    def _folders(self, location: str) -> list[str]:
        """Names of the sub-folders of a folder (none when it does not exist), through Hadoop's
        FileSystem for a URI (any store Spark can reach), pathlib for a local path."""
        if "://" not in location:
            base = Path(location)
            return [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
        jvm = self.spark._jvm  # noqa: SLF001 - the Hadoop FileSystem is only reachable through py4j
        assert jvm is not None
        hpath = jvm.org.apache.hadoop.fs.Path(location)
        fs = hpath.getFileSystem(self.spark._jsc.hadoopConfiguration())  # noqa: SLF001
        if not fs.exists(hpath):
            return []
        return [st.getPath().getName() for st in fs.listStatus(hpath) if st.isDirectory()]


_COMMIT = re.compile(r"^(\d{20})\.json$")  # a commit file of _delta_log: <version>.json


def _latest_commit(fs: Any, log_dir: Any) -> int | None:
    """The highest <version>.json in a _delta_log folder (a Hadoop FileSystem and Path), None when none."""
    versions = [int(m.group(1)) for st in fs.listStatus(log_dir) if (m := _COMMIT.match(st.getPath().getName()))]
    return max(versions) if versions else None


def _rows_from(metrics: dict[str, str]) -> int:
    """Rows a commit wrote, from Delta's operation metrics (no re-count of data)."""
    if "numOutputRows" in metrics:
        return int(metrics["numOutputRows"])
    return int(metrics.get("numTargetRowsInserted", 0)) + int(metrics.get("numTargetRowsUpdated", 0))
