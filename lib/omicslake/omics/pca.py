"""Sample PCA of a normalised assay and the PCA-outlier QC rule.

The assay is stored one row per feature with its values over the samples as an array, so the
samples' PCA is computed from the samples' Gram matrix: with X the (features x samples) matrix of the
``top`` most variable features, each centred on its mean over the samples (a missing value counts
as the mean, i.e. 0, for the PCA only), G = X'X (samples x samples) is summed on the executors by
MLlib's ``RowMatrix.computeGramianMatrix`` and G = U L U' gives the scores U sqrt(L): the same as
a PCA of the samples x features matrix (``sklearn.decomposition.PCA`` on X', up to each
component's sign; tested). The driver holds n x n numbers (n samples), never the matrix.

A sample is a PCA outlier when its score on one of the first ``k`` components lies more than
``z`` robust standard deviations (1.4826 x the median absolute deviation) from the component's
median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def gram(norm: DataFrame, top: int) -> np.ndarray:
    """The samples' Gram matrix X'X of the ``top`` features of ``norm`` (feature_id, values, mean,
    variance: silver.omics_<assay>'s shape) with the largest variance, each centred on ``mean``,
    missing values 0 after centring. n x n numpy array; empty when no feature has a variance."""
    from pyspark.mllib.linalg import Vectors
    from pyspark.mllib.linalg.distributed import RowMatrix

    chosen = norm.where(F.col("variance").isNotNull()).orderBy(F.col("variance").desc(), "feature_id").limit(top)
    centred = chosen.select(F.transform("values", lambda v: F.coalesce(v - F.col("mean"), F.lit(0.0))).alias("x"))
    rows = centred.rdd.map(lambda r: Vectors.dense(r["x"]))
    if rows.isEmpty():
        return np.zeros((0, 0))
    return np.asarray(RowMatrix(rows).computeGramianMatrix().toArray())


def scores(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n x k scores, the k eigenvalues) from the Gram matrix of centred data; the sign of each
    component is fixed so that its largest absolute score is positive (deterministic)."""
    vals, vecs = np.linalg.eigh(g)
    order = np.argsort(vals)[::-1][:k]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    s = vecs * np.sqrt(vals)
    flip = np.sign(s[np.argmax(np.abs(s), axis=0), np.arange(s.shape[1])])
    return s * np.where(flip == 0, 1.0, flip), vals


@dataclass(frozen=True)
class Outlier:
    """A sample (index into the scores' rows) beyond the threshold: the component (1-based) where
    its robust z is largest in absolute value, and that z."""

    index: int
    pc: int
    z: float


def outliers(s: np.ndarray, z: float) -> list[Outlier]:
    """The samples whose score on any component (column of ``s``) lies more than ``z`` robust SDs
    (1.4826 x MAD) from the component's median; a component with MAD 0 flags nothing."""
    med = np.median(s, axis=0)
    mad = 1.4826 * np.median(np.abs(s - med), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rz = np.where(mad > 0, (s - med) / mad, 0.0)
    out = []
    for i in range(s.shape[0]):
        j = int(np.argmax(np.abs(rz[i])))
        if abs(rz[i, j]) > z:
            out.append(Outlier(i, j + 1, float(rz[i, j])))
    return out
