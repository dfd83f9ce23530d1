"""GWAS on Spark: the fits of :mod:`omicslake.genomics.gwas.fit` run on the executors, one block of
variants at a time (``mapInArrow``), on genotypes read as small integer matrices."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from omicslake.errors import InputError
from omicslake.genomics.gwas.fit import fit_block
from omicslake.genomics.gwas.samples import Design

RESULT_SCHEMA = (
    "contig string, position int, ref string, alt string, rsid string, tested_allele string, n int, "
    "af double, beta double, se double, statistic double, p double, neg_log10_p double, firth boolean, status string"
)
RESULT_COLUMNS = [c.split()[0] for c in RESULT_SCHEMA.split(", ")]
_ARROW_TYPES = {"string": pa.string(), "int": pa.int32(), "double": pa.float64(), "boolean": pa.bool_()}
ARROW_SCHEMA = pa.schema([pa.field(c.split()[0], _ARROW_TYPES[c.split()[1]]) for c in RESULT_SCHEMA.split(", ")])


BLOCK_ENTRIES = 1 << 21  # genotypes per block of fits (variants x samples): a few MB per matrix


def dosage_matrix(column: pa.Array, width: int) -> np.ndarray:
    """An Arrow list column of alt-allele dosages (one list of ``width`` calls per variant, null
    for a missing call) as a variants x samples int8 matrix, -1 where a call is missing. One
    copy of the flat values, no Python loop over variants."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if column.null_count or (len(lengths) and (lengths != width).any()):
        raise InputError(
            f"genotype rows must each hold {width} calls (one per sample); found lengths "
            f"{sorted(set(lengths[lengths != width].tolist()))[:5]} or a null row"
        )
    values = pc.fill_null(column.flatten(), -1)
    return values.to_numpy(zero_copy_only=False).astype(np.int8, copy=False).reshape(len(column), width)


def calls_matrix(column: pa.Array, width: int) -> np.ndarray:
    """A binary column of calls, one byte per sample (ASCII '0', '1', '2'; '.' for a missing call,
    as :func:`omicslake.genomics.gwas.hail_mode.genotype_calls` writes them), as a variants x
    samples int8 matrix of alt-allele dosages, -1 where a call is missing: the bytes are reshaped
    in place, no Python loop over variants or calls."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise InputError("a genotype row has no calls (null); every row must hold one call per sample")
    _, offsets, data = column.buffers()
    off = np.frombuffer(offsets, np.int32)[column.offset : column.offset + len(column) + 1]
    if (np.diff(off) != width).any():
        raise InputError(
            f"genotype rows must each hold {width} calls (one per sample); found lengths "
            f"{sorted(set(np.diff(off)[np.diff(off) != width].tolist()))[:5]}"
        )
    raw = np.frombuffer(data, np.uint8)[off[0] : off[-1]].reshape(len(column), width)
    dose = raw.astype(np.int8) - np.int8(48)
    if ((dose > 2) | ((dose < 0) & (raw != ord(".")))).any():
        raise InputError("genotype calls must be '0', '1', '2' or '.' (missing), one byte per sample")
    dose[dose < 0] = -1
    return dose


def regress(
    genotypes: DataFrame, design: Design, model: str, missing: str = "drop", firth: str = "fallback"
) -> DataFrame:
    """One result row per variant of ``genotypes`` (contig, position, ref, alt, rsid, and either
    ``calls``, one byte per sample as :func:`~omicslake.genomics.gwas.hail_mode.genotype_calls`
    writes them, or a ``dosage`` array, in the sample order the design's index refers to), fitted
    on the executors: each Arrow batch becomes an int8 matrix, cut into blocks of variants that
    :func:`fit_block` fits at once."""
    spark = genotypes.sparkSession
    shared = spark.sparkContext.broadcast(design)

    def fit_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        d = shared.value
        width = None
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if packed:
                col = batch.column(batch.schema.get_field_index("calls"))
                width = width or len(col[0].as_py())
                calls = calls_matrix(col, width)[:, d.index]
            else:
                col = batch.column(batch.schema.get_field_index("dosage"))
                width = width or len(col[0])
                calls = dosage_matrix(col, width)[:, d.index]
            step = max(1, BLOCK_ENTRIES // max(1, calls.shape[1]))
            fits = []
            for start in range(0, len(calls), step):
                block = calls[start : start + step]
                g = np.where(block < 0, np.nan, block.astype(np.float64))
                fits.append(fit_block(g, d, model, missing, firth))
            frame = pd.concat(fits, ignore_index=True)
            for col in ("contig", "position", "ref", "alt", "rsid"):
                frame[col] = batch.column(batch.schema.get_field_index(col)).to_pandas()
            frame["tested_allele"] = frame["alt"]
            yield pa.RecordBatch.from_pandas(frame[RESULT_COLUMNS], schema=ARROW_SCHEMA, preserve_index=False)

    packed = "calls" in genotypes.columns
    geno = F.col("calls").cast("binary").alias("calls") if packed else F.col("dosage")
    cols = genotypes.select("contig", "position", "ref", "alt", "rsid", geno)
    return cols.mapInArrow(fit_batches, RESULT_SCHEMA)
