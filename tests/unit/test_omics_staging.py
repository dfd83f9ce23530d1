"""ingest_omics stages each block as a Parquet file written by pyarrow from the block's numpy array:
read back, it holds the block's ids, metadata, values (NaN kept: missing), rows and lines."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow.parquet as pq

from omicslake.jobs.ingest_omics import block_parquet
from omicslake.omics.readers import Block


def test_a_block_round_trips_through_its_staged_parquet() -> None:
    values = np.array([[1.0, math.nan], [0.0, 2.0], [7.5, 3.0]]).T  # a transposed view, as h5ad blocks are
    assert values.shape == (2, 3) and not values.flags.c_contiguous
    block = Block(["G1", "G2"], [{"Chr": "chr1", "Length": "2000"}, {}], values, [4, 5], [7, 9])
    t = pq.read_table(io.BytesIO(block_parquet(block)))
    assert t.column_names == ["feature_id", "feature_meta", "values", "row_number", "line"]
    rows = t.to_pylist()
    assert [r["feature_id"] for r in rows] == ["G1", "G2"]
    assert rows[0]["feature_meta"] == [("Chr", "chr1"), ("Length", "2000")] and rows[1]["feature_meta"] == []
    assert rows[0]["values"] == [1.0, 0.0, 7.5]
    assert rows[1]["values"][1:] == [2.0, 3.0] and math.isnan(rows[1]["values"][0])
    assert [(r["row_number"], r["line"]) for r in rows] == [(4, 7), (5, 9)]
    hdf5 = Block(["F"], [{}], np.array([[0.5, 1.5]]), [0], None)  # HDF5 formats have no lines
    assert pq.read_table(io.BytesIO(block_parquet(hdf5))).to_pylist()[0]["line"] is None
