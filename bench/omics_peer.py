"""The single-machine peers of ingest_omics + omics_qc: pandas or anndata reads the whole matrix, numpy normalises.

    python -m bench.omics_peer --reader pandas --file counts.txt.gz --out peer.npz --json peer.json
    python -m bench.omics_peer --reader anndata --file counts.h5ad --out peer.npz --json peer.json

``pandas``: ``pandas.read_csv`` of the featureCounts TSV (gzipped; its ``# Program`` line skipped, the
five annotation columns dropped); ``anndata``: ``anndata.read_h5ad`` (``X`` is samples x genes, so it
is transposed). Then ``normalise``: what omics_qc computes for an ``rnaseq_counts`` assay with the same
thresholds, in numpy on the whole matrix (library sizes and detected features per sample, the
sample rules, the low-counts rule per feature, DESeq2 size factors over the kept features with every
count > 0, limma-voom's log2 CPM, the mean and variance of every kept feature). Writes the timings
(read, normalise) to ``--json`` and what the benchmark compares with our silver tables to ``--out``.
Run as its own process by ``bench/omics.py`` so that its peak memory is measured apart from Spark's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURECOUNTS_META = ("Chr", "Start", "End", "Strand", "Length")
CHECK_ROWS = 20  # kept features whose every normalised value is compared with silver


@dataclass(frozen=True)
class Thresholds:
    """The omics_qc settings the peer applies (jobs.omics_qc, defaults as in OmicsQcConfig)."""

    min_library_size: float = 0.0
    min_detected_fraction: float = 0.0
    min_count: float = 1.0
    min_expressed_fraction: float = 0.1
    prior_count: float = 0.5


def normalise(counts: np.ndarray, t: Thresholds) -> dict[str, np.ndarray]:
    """omics_qc on a dense genes x samples count matrix without missing values: ``library_size`` and
    ``detected`` of every sample, ``passing`` samples (library size and detected share at least the
    thresholds), ``kept`` features (expressed, count >= min_count, in at least min_expressed_fraction
    of the passing samples), ``size_factor`` of each passing sample (DESeq2's median of ratios over the
    kept features with every count > 0), ``log2cpm`` of the kept features
    (log2((count + prior) / (library size + 1) * 1e6)), and its ``mean`` and ``variance`` (n - 1) per feature."""
    n_genes = counts.shape[0]
    lib = counts.sum(axis=0, dtype=np.float64)
    detected = (counts > 0).sum(axis=0)
    passing = (lib >= t.min_library_size) & (detected / max(n_genes, 1) >= t.min_detected_fraction)
    x = counts if passing.all() else counts[:, passing]  # no copy when every sample passes
    kept = (x >= t.min_count).mean(axis=1) >= t.min_expressed_fraction
    k = x[kept].astype(np.float64)
    positive = (k > 0).all(axis=1)
    logs = np.log(k[positive])
    sf = np.exp(np.median(logs - logs.mean(axis=1, keepdims=True), axis=0))
    del logs
    k += t.prior_count
    k /= lib[passing] + 1.0
    k *= 1e6
    np.log2(k, out=k)
    return {
        "library_size": lib,
        "detected": detected,
        "passing": passing,
        "kept": kept,
        "size_factor": sf,
        "log2cpm": k,
        "mean": k.mean(axis=1),
        "variance": k.var(axis=1, ddof=1),
    }


def read(reader: str, path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """(genes x samples counts, gene ids, sample ids) as the peer library reads the whole file."""
    if reader == "pandas":
        import pandas as pd

        frame = pd.read_csv(path, sep="\t", skiprows=1, index_col=0)  # line 1: featureCounts' command line
        frame = frame.drop(columns=list(FEATURECOUNTS_META))
        return frame.to_numpy(), [str(g) for g in frame.index], [str(s) for s in frame.columns]
    if reader == "anndata":
        import anndata

        ad = anndata.read_h5ad(path)
        return np.asarray(ad.X).T, list(ad.var_names), list(ad.obs_names)
    raise ValueError(f"unknown reader {reader!r}: pandas or anndata")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.omics_peer", description=__doc__)
    ap.add_argument("--reader", choices=["pandas", "anndata"], required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--out", required=True, help="npz with what is compared with silver")
    ap.add_argument("--json", required=True, help="timings and versions")
    ap.add_argument("--thresholds", default="{}", help="JSON of Thresholds fields")
    args = ap.parse_args(argv)
    t = Thresholds(**json.loads(args.thresholds))
    t0 = time.monotonic()
    counts, genes, samples = read(args.reader, Path(args.file))
    t1 = time.monotonic()
    r = normalise(counts, t)
    t2 = time.monotonic()
    kept_ids = np.array(genes)[r["kept"]]
    np.savez(
        args.out,
        kept=kept_ids,
        samples=np.array(samples),
        passing=r["passing"],
        library_size=r["library_size"],
        size_factor=r["size_factor"],
        mean=r["mean"],
        variance=r["variance"],
        check_ids=kept_ids[:CHECK_ROWS],
        check_values=r["log2cpm"][:CHECK_ROWS],
    )
    lib = __import__(args.reader)
    out: dict[str, Any] = {
        "reader": args.reader,
        "version": lib.__version__,
        "read_seconds": round(t1 - t0, 3),
        "normalise_seconds": round(t2 - t1, 3),
        "seconds": round(t2 - t0, 3),
        "dtype": str(counts.dtype),
        "shape": list(counts.shape),
    }
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
