"""One shape and one de-duplication rule for every quarantine table.

Every ``quarantine.<table>`` (EHR tables from conform_ehr, ``vcf_variants`` from ingest_vcf,
``sample_qc`` and ``variant_qc`` from genomic_qc) has the columns of ``SHAPE``:

- ``row_key``: the row's key in the table it was kept out of (a pseudonymous key for EHR rows,
  ``contig:position:ref:alts`` for a VCF record, the sample id, ``contig:position:ref:alt``);
- ``rule``, ``reason``: the rule it broke and why, in words (never a row value of an EHR row);
- ``row_json``: the row as JSON (for EHR the de-identified silver row; for genomics the site or
  the QC metrics, not the calls, which stay in bronze);
- ``source_file``, ``line``: the file it came from and the line in it (null where no line is
  knowable: a QC'd sample or split variant);
- ``run_id``: the run that quarantined it;

plus the columns a table's contract declares beyond them, only where a process needs them
(``vcf_variants.file_sha256``: the ledger deletes a killed run's rows by the file's digest).

De-duplication: a quarantine table holds one row per (row_key, rule, source_file, line), nulls
equal. A rerun on the same input adds nothing; the same bad row delivered again in another file
or on another line is another occurrence and is recorded. ``write`` is the one way rows get in.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from omicslake.io.delta import Lake

SHAPE = ("row_key", "rule", "reason", "row_json", "source_file", "line", "run_id")
DEDUP_KEY = ("row_key", "rule", "source_file", "line")


def _col(c: Column | str | None, cast: str) -> Column:
    if c is None:
        return F.lit(None).cast(cast)
    return (F.col(c) if isinstance(c, str) else c).cast(cast)


def rows(
    df: DataFrame,
    key: Column | str,
    row: list[str] | Column,
    source_file: Column | str | None,
    line: Column | str | None,
    run_id: str,
    rule: Column | str = "rule",
    reason: Column | str = "reason",
    extra: dict[str, Column] | None = None,
) -> DataFrame:
    """Rows of df (which carry their rule and reason) in the quarantine shape.

    row: the columns to keep as ``row_json`` (a list of names), or a JSON column already built;
    extra: further columns, by name, that the table's contract declares."""
    row_json = F.to_json(F.struct(*[F.col(f"`{c}`") for c in row])) if isinstance(row, list) else row
    return df.select(
        _col(key, "string").alias("row_key"),
        _col(rule, "string").alias("rule"),
        _col(reason, "string").alias("reason"),
        row_json.cast("string").alias("row_json"),
        _col(source_file, "string").alias("source_file"),
        _col(line, "bigint").alias("line"),
        F.lit(run_id).alias("run_id"),
        *[c.alias(n) for n, c in (extra or {}).items()],
    )


def new_rows(batch: DataFrame, existing: DataFrame | None) -> DataFrame:
    """The rows of batch to add: one per DEDUP_KEY, none that existing already holds (nulls equal)."""
    batch = batch.dropDuplicates(list(DEDUP_KEY))
    if existing is None:
        return batch
    old = existing.select(*[F.col(c).alias(f"_old_{c}") for c in DEDUP_KEY])
    on = reduce(lambda a, b: a & b, [batch[c].eqNullSafe(old[f"_old_{c}"]) for c in DEDUP_KEY])
    return batch.join(old, on, "left_anti")


def write(lake: Lake, table: str, batch: DataFrame) -> int:
    """Append the new rows of batch (see ``new_rows``) to quarantine table ``table``, in the column
    order of its contract; the number of rows added. Nothing is committed when none is new."""
    from omicslake.contracts import enforce, load_contract

    if not table.startswith("quarantine."):
        raise ValueError(f"{table} is not a quarantine table")
    contract = load_contract(table)
    add = new_rows(batch, lake.read_optional(table)).transform(enforce(contract)).cache()
    try:
        n = add.count()
        if n:
            lake.write(add, table, mode="append")
        return n
    finally:
        add.unpersist()
