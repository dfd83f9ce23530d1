"""Job ingest_omics: expression, methylation, proteomics and microbiome matrices into
bronze.omics_features (one row per feature, values as an array) and bronze.omics_samples.

Each file (``jobs.ingest_omics.files``: path or glob, assay name, assay type, format) is read by
``omicslake.omics.readers`` in blocks of ``block_rows`` features; each block becomes a small
DataFrame staged as parquet under the run's scratch folder, so the driver never holds more than a
block. The staged rows go to bronze in one commit, then the samples, then the file's ledger row
(ops.ingested_files, fingerprinted by SHA-256 like ingest_vcf: the same file twice adds nothing; a
run killed in between is cleaned out by the file's digest and ingested again whole).

A file that breaks a rule (ragged rows, a value that is not a number, duplicate feature or sample
ids, a GCT dimension line that disagrees with its body, an .h5ad without X, negative counts, betas
outside [0, 1]) is refused with an error naming the file and line or row: nothing of it is in the
lake, it is recorded as failed in ops.ingested_files, and the files after it are still read.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config, OmicsFileConfig, build_dataclass
from omicslake.contracts import enforce, load_contract
from omicslake.errors import ConfigError, InputError, ReconciliationError
from omicslake.io import ledger
from omicslake.io.delta import Lake, check_identifier
from omicslake.io.files import remove_tree, sha256, write_bytes
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.omics.readers import Block

SPEC = JobSpec(
    name="ingest_omics",
    description="Ingest omics matrices (TSV/CSV, GCT, h5ad, BIOM) into bronze.omics_features and bronze.omics_samples.",
    after=("generate",),
    config=("jobs.ingest_omics", "jobs.generate.out"),
    always_run=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)
TABLE = "bronze.omics_features"
_FILE_TABLES = {"bronze.omics_features": "file_sha256", "bronze.omics_samples": "file_sha256"}
# What each assay type must hold: counts are never negative, betas lie in [0, 1].
CHECKS: dict[str, dict[str, Any]] = {
    "rnaseq_counts": {"nonnegative": True},
    "microbiome_counts": {"nonnegative": True},
    "methylation_beta": {"bounds": (0.0, 1.0)},
    "proteomics_intensity": {"nonnegative": True},
}


def file_list(cfg: Config) -> list[OmicsFileConfig]:
    """The configured files, or the list generate wrote to <landing>/omics/files.yaml (paths there
    are relative to it); empty when neither exists."""
    from omicslake.io.layout import landing_folder

    if cfg.jobs.ingest_omics.files:
        return list(cfg.jobs.ingest_omics.files)
    listing = landing_folder(cfg.layout, cfg.jobs.generate.out) / "omics" / "files.yaml"
    if not listing.exists():
        return []
    raw = yaml.safe_load(listing.read_text()) or []
    if not isinstance(raw, list):
        raise ConfigError(f"{listing}: must be a list of files (path, assay, assay_type, format)")
    out = []
    for i, item in enumerate(raw):
        f = build_dataclass(OmicsFileConfig, item, f"{listing}[{i}]")
        path = Path(f.path) if Path(f.path).is_absolute() else listing.parent / f.path
        out.append(OmicsFileConfig(str(path), f.assay, f.assay_type, f.format, f.meta_columns))
    return out


def expand(files: Sequence[OmicsFileConfig]) -> list[tuple[Path, OmicsFileConfig]]:
    """Each configured file or glob as the paths it names; InputError when a pattern names none."""
    out = []
    for f in files:
        check_identifier(f.assay, "assay name (jobs.ingest_omics.files[].assay)")
        matches = sorted(glob.glob(str(Path(f.path).expanduser())))
        if not matches:
            raise InputError(f"no omics file matches {f.path!r} (jobs.ingest_omics.files); check the path")
        out += [(Path(m).resolve(), f) for m in matches]
    return out


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    c = cfg.jobs.ingest_omics
    if c.block_rows < 1:
        raise ConfigError(f"jobs.ingest_omics.block_rows must be at least 1, got {c.block_rows}")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    done = ledger.known(lake, TABLE)
    stats: dict[str, Any] = {"files": 0, "skipped_files": 0, "features": 0, "samples": 0, "failed_files": 0}
    refused: list[tuple[Path, str]] = []
    for path, spec in expand(file_list(cfg)):
        try:
            _ingest(spark, cfg, lake, path, spec, done, now, stats)
        except (InputError, ReconciliationError) as exc:
            refused.append((path, str(exc)))
            _refuse(lake, path, spec, str(exc), now)
            log.error("%s refused: %s", path.name, exc)
    stats["failed_files"] = len(refused)
    stats["failed"] = [{"file": str(p), "error": e} for p, e in refused]
    if refused and c.on_bad_file == "fail_at_end":
        raise InputError(
            f"{len(refused)} omics file(s) refused ({stats['files']} landed, {stats['skipped_files']} already there); "
            "each is in ops.ingested_files with its error and nothing of it is in the lake. "
            + " | ".join(e for _, e in refused[:5])
            + " (jobs.ingest_omics.on_bad_file=skip lets the job succeed with refused files)"
        )
    return stats


def _refuse(lake: Lake, path: Path, spec: OmicsFileConfig, error: str, now: dt.datetime) -> None:
    digest = sha256(path) if path.exists() else "missing:" + str(path)
    ledger.discard_partial(lake, digest, _FILE_TABLES)
    size = path.stat().st_size if path.exists() else 0
    row = ledger.failed_row(TABLE, spec.format, str(path), digest, size, spec.assay, lake.run_id, now, error)
    ledger.record(lake, [row])


def _ingest(
    spark: SparkSession,
    cfg: Config,
    lake: Lake,
    path: Path,
    spec: OmicsFileConfig,
    done: set[str],
    now: dt.datetime,
    stats: dict[str, Any],
) -> None:
    """One matrix into bronze, then its ledger row; nothing of it in the lake when it is refused."""
    from omicslake.omics.readers import open_matrix

    digest = sha256(path)
    if digest in done:
        log.info("%s: already ingested (sha256 %s...), skipped", path.name, digest[:12])
        stats["skipped_files"] += 1
        return
    ledger.discard_partial(lake, digest, _FILE_TABLES)
    matrix = open_matrix(path, spec.format, spec.meta_columns, **CHECKS[spec.assay_type])
    staged = cfg.layout.tmp(f"ingest_omics-{lake.run_id}-{digest[:16]}.parquet")
    remove_tree(staged, cfg)
    n_staged = 0
    try:
        for k, block in enumerate(matrix.blocks(cfg.jobs.ingest_omics.block_rows)):
            write_bytes(f"{staged}/part-{k:06d}.parquet", block_parquet(block), cfg)
            n_staged += len(block.ids)
        features_contract = load_contract(TABLE)
        features = (
            spark.read.parquet(staged)
            .select(
                F.lit(spec.assay).alias("assay"),
                F.lit(spec.assay_type).alias("assay_type"),
                "feature_id",
                "feature_meta",
                # NaN (a missing value in the reader's arrays) is null in the lake
                F.transform("values", lambda x: F.when(F.isnan(x), F.lit(None)).otherwise(x)).alias("values"),
                "row_number",
                "line",
                F.lit(str(path)).alias("source_file"),
                F.lit(digest).alias("file_sha256"),
                F.lit(lake.run_id).alias("_run_id"),
                F.lit(now).cast("timestamp").alias("_ingested_at"),
            )
            .transform(enforce(features_contract))
            if n_staged
            else spark.createDataFrame([], features_contract.struct())
        )
        written = lake.write(features, TABLE, mode="append")
    finally:
        remove_tree(staged, cfg)
    n_bronze = lake.read(TABLE).where(F.col("file_sha256") == digest).count()
    if n_bronze != n_staged:
        ledger.discard_partial(lake, digest, _FILE_TABLES)
        raise ReconciliationError(f"{path}: {n_staged} features read but {n_bronze} rows in {TABLE}; taken out again")
    samples_contract = load_contract("bronze.omics_samples")
    sample_rows = [
        (spec.assay, spec.assay_type, s, md, i, n_staged, str(path), digest, lake.run_id, now)
        for i, (s, md) in enumerate(zip(matrix.samples, matrix.sample_meta, strict=True))
    ]
    lake.write(spark.createDataFrame(sample_rows, samples_contract.struct()), "bronze.omics_samples", mode="append")
    lines_counted = None
    ledger.record(
        lake,
        [
            ledger.row(
                TABLE,
                spec.format,
                str(path),
                digest,
                path.stat().st_size,
                spec.assay,
                n_bronze,
                lines_counted,
                0,
                lake.run_id,
                now,
            )
        ],
    )
    stats["files"] += 1
    stats["features"] += written.rows
    stats["samples"] += len(sample_rows)
    log.info("%s: %d features x %d samples (%s, %s)", path.name, n_bronze, len(sample_rows), spec.assay, spec.format)


def block_parquet(block: Block) -> bytes:
    """A block as one staged Parquet file (feature_id, feature_meta, values, row_number, line), written
    by pyarrow straight from the block's numpy array: no Python object per value, and no trip of the
    values through Spark's Python-to-JVM conversion (which took most of the ingest's CPU)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_rows, n_samples = block.values.shape
    offsets = pa.array(np.arange(0, (n_rows + 1) * n_samples, n_samples, dtype=np.int64))
    flat = pa.array(np.ascontiguousarray(block.values, dtype=np.float64).ravel())  # NaN stays NaN (missing)
    # 64-bit offsets: a block of any size; Parquet stores a LIST either way, read back as array<double>
    values = pa.LargeListArray.from_arrays(offsets, flat)
    table = pa.table(
        {
            "feature_id": pa.array(block.ids, pa.string()),
            "feature_meta": pa.array([list(m.items()) for m in block.meta], pa.map_(pa.string(), pa.string())),
            "values": values,
            "row_number": pa.array(block.rows, pa.int64()),
            "line": pa.array(block.lines if block.lines is not None else [None] * n_rows, pa.int64()),
        }
    )
    out = pa.BufferOutputStream()
    pq.write_table(table, out)
    return bytes(out.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
