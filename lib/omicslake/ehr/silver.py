"""One silver EHR table from its bronze rows, without the lake: build, de-duplicate, check, split.

``conform`` turns the bronze rows of one table into the rows to write (in the contract's shape,
with the run id and the row hash) and the rows to quarantine (in the one quarantine shape of
``omicslake.quarantine``), and counts every side of the reconciliation from the DataFrames
themselves. ``batch_problems`` and ``write_problems`` state the identities the job checks before
and after its writes; ``changed_rows`` picks the rows a MERGE has to touch. The job
(``omicslake.jobs.conform_ehr``) does the reading, writing and restoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake import quarantine
from omicslake.contracts import CheckResult, Contract, check, enforce
from omicslake.ehr.conform import dedupe, row_hash
from omicslake.frames import session_partitions

# Columns of a silver row that are not its data (provenance, bookkeeping): left out of the row
# hash and of the quarantined row's JSON.
NON_DATA = frozenset({"_source_file", "_line", "_batch_id", "_row_hash", "run_id"})

# Bronze rows per partition of the de-duplication's shuffle (about 85 MB of a cached measurement
# partition). Spark's default of spark.sql.shuffle.partitions (4 here) suits the demo, but put
# 67.8 million observations in 2.8 GiB partitions whose caching ran an 8 GiB driver out of heap;
# adaptive execution does not help there, since Spark 3.5 does not coalesce the partitions of a
# cached plan (a session-wide initialPartitionNum of 200 made a small cached window 2-3x slower).
ROWS_PER_PARTITION = 500_000


@dataclass(frozen=True)
class Conformed:
    """The outcome of ``conform`` for one table; the rows behind it are materialised: ``release`` them."""

    kept: DataFrame  # the contract's columns, run_id and _row_hash filled (read from the materialised rows)
    quarantined: DataFrame  # omicslake.quarantine's shape
    checked: CheckResult  # the expectations' violation counts (checked.counts)
    n_read: int  # rows of the bronze input
    n_built: int  # rows built from them (must equal n_read)
    n_duplicates: int  # rows that lost to a later delivery of the same natural key
    n_keys: int  # distinct natural keys among the built rows
    n_kept: int
    n_quarantined: int
    _cached: tuple[DataFrame, ...] = ()

    def release(self) -> None:
        """Unpersist the cached DataFrames (the built rows and quarantined, and a custom check's flagged
        rows); call it once kept and quarantined are written. Staged rows are the stager's to remove."""
        self.checked.release()
        for df in self._cached:
            df.unpersist()


def data_columns(contract: Contract) -> list[str]:
    """The contract's data columns: what the row hash and the quarantined row's JSON hold."""
    return [c for c in contract.names if c not in NON_DATA]


def conform(
    source: DataFrame,
    build: Callable[[DataFrame], DataFrame],
    contract: Contract,
    run_id: str,
    check_rows: Callable[[DataFrame, Contract], CheckResult] | None = None,
    rows_per_partition: int = ROWS_PER_PARTITION,
    stage: Callable[[DataFrame], DataFrame] | None = None,
) -> Conformed:
    """Build the silver rows of ``source`` (bronze rows) with ``build`` (an ``ehr.conform`` row
    builder, which adds the helper columns the expectations read), keep the latest delivery of each
    natural key (``dedupe``), check the contract's expectations (``check_rows``, default
    ``contracts.check``) and split the rows
    into those to write and those to quarantine. The quarantine row's key is the contract's first
    key, its JSON the de-identified data columns, its source and line the bronze row's.

    The built rows (with their row hash) are materialised once; the checks, the kept rows and the
    counts read that copy. A small input is cached. A large one (more than the session's
    spark.sql.shuffle.partitions x ``rows_per_partition`` rows) is de-duplicated in one partition
    per ``rows_per_partition`` rows and, when ``stage`` is given, written once by it (the job stages
    it as Parquet in the run's scratch folder and reads it back): a Parquet copy is a fraction of
    Spark's cache on disk, and it cuts the lineage, so the de-duplication's shuffle files can go.

    A ``fail`` expectation raises ExpectationFailed here, before anything is written."""
    key = contract.keys[0]
    data_cols = data_columns(contract)
    spark = source.sparkSession
    n_read = source.count()
    built = build(source)
    parts = shuffle_partitions(spark, n_read, rows_per_partition)
    large = parts > session_partitions(spark)
    if large:
        built = built.repartition(parts, "_nk")  # else the window's own shuffle (adaptive execution may coalesce it)
    # the natural key holds source ids and unshifted dates: past the de-duplication only its hash
    # goes on (to the staged copy and the distinct-key count), so no raw identifier leaves bronze
    rows = dedupe(built).withColumn("_row_hash", row_hash(data_cols)).withColumn("_nk", F.sha2(F.col("_nk"), 256))
    del built  # the staged copy must be the only thing left holding the shuffle's files (the job frees them)
    rows = stage(rows) if large and stage is not None else rows.cache()
    totals = rows.agg(F.count(F.lit(1)), F.sum(F.col("_dup").cast("long")), F.countDistinct("_nk")).first()
    assert totals is not None
    n_built, n_dup, n_nk = int(totals[0]), int(totals[1] or 0), int(totals[2])
    undup = rows.where("NOT _dup").drop("_dup")
    # the flags are a cheap projection of the materialised rows: not a second copy
    result = check_rows(undup, contract) if check_rows else check(undup, contract, cache=False)
    kept = result.kept.withColumn("run_id", F.lit(run_id))
    kept = kept.select(*contract.names).transform(enforce(contract))  # helper columns dropped
    quarantined = quarantine.rows(result.quarantined, key, data_cols, "_source_file", "_line", run_id).cache()
    return Conformed(
        kept,
        quarantined,
        result,
        n_read,
        n_built,
        n_dup,
        n_nk,
        kept.count(),
        quarantined.count(),
        (rows, quarantined),
    )


def shuffle_partitions(spark: SparkSession, n_rows: int, rows_per_partition: int = ROWS_PER_PARTITION) -> int:
    """Partitions for a shuffle of ``n_rows`` rows: the session's spark.sql.shuffle.partitions, or
    one per ``rows_per_partition`` rows when that is more."""
    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be >= 1, got {rows_per_partition}")
    return max(session_partitions(spark), -(-n_rows // rows_per_partition))


def batch_problems(c: Conformed) -> list[str]:
    """What does not add up before anything is written (empty when all holds):
    read = built, duplicates = built - distinct natural keys, built = kept + quarantined + duplicates."""
    problems = []
    if c.n_built != c.n_read:
        problems.append(f"{c.n_read} rows read but {c.n_built} built from them")
    if c.n_duplicates != c.n_built - c.n_keys:
        problems.append(
            f"{c.n_duplicates} rows marked duplicate but {c.n_built - c.n_keys} share a natural key with another"
        )
    if c.n_built != c.n_kept + c.n_quarantined + c.n_duplicates:
        problems.append(
            f"{c.n_built - c.n_kept - c.n_quarantined - c.n_duplicates} rows missing between the checks and the write "
            f"({c.n_built} built = {c.n_kept} kept + {c.n_quarantined} quarantined + {c.n_duplicates} duplicates does not hold)"
        )
    return problems


def write_problems(
    target: str, qtable: str, n_kept: int, n_out: int, n_quarantined: int, n_quarantine_out: int
) -> list[str]:
    """What does not add up after the writes, each side counted from the tables as written: the
    kept rows' keys in the target, the quarantined rows (by quarantine.DEDUP_KEY) in its quarantine."""
    problems = []
    if n_out != n_kept:
        problems.append(f"{n_kept} rows kept but {n_out} rows with their keys in {target} after the write")
    if n_quarantine_out != n_quarantined:
        problems.append(f"{n_quarantined} rows quarantined but {n_quarantine_out} of them in {qtable} after the write")
    return problems


def changed_rows(kept: DataFrame, current: DataFrame, key: str) -> DataFrame:
    """The kept rows that are new or differ from the current silver table (by key and row hash):
    what a MERGE has to write, so that a rerun on the same bronze commits nothing."""
    return kept.join(current.select(key, "_row_hash"), [key, "_row_hash"], "left_anti")


def rows_of_batch(table: DataFrame, batch: DataFrame, columns: list[str]) -> DataFrame:
    """The rows of table whose values in columns are those of a row of batch (nulls equal)."""
    b = batch.select(*[F.col(c).alias(f"_b_{c}") for c in columns]).distinct()
    on = [table[c].eqNullSafe(b[f"_b_{c}"]) for c in columns]
    return table.join(b, on, "left_semi")
