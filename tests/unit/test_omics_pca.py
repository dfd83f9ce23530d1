"""The samples' PCA of a normalised assay (``omics.pca``) against scikit-learn's PCA on the samples x
features matrix, and the PCA-outlier rule on a planted outlier (robust z worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import SparkSession

from omicslake.omics import pca


def test_scores_equal_sklearn_pca_up_to_sign_and_a_planted_outlier_fails(spark: SparkSession) -> None:
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(3)
    n, p = 30, 40
    x = rng.normal(size=(n, p)) + np.outer(rng.normal(size=n), rng.normal(size=p))  # samples x features
    x[7] += 12.0 * rng.normal(size=p)  # sample 7: far from everyone
    x[3, 5] = np.nan  # a missing value: the feature's mean for the PCA
    mean = np.nanmean(x, axis=0)
    var = np.nanvar(x, axis=0, ddof=1)
    rows = [
        (f"f{j}", [None if np.isnan(v) else float(v) for v in x[:, j]], float(mean[j]), float(var[j])) for j in range(p)
    ]
    norm = spark.createDataFrame(rows, "feature_id string, values array<double>, mean double, variance double")
    g = pca.gram(norm, top=p)
    s, vals = pca.scores(g, 3)
    filled = np.where(np.isnan(x), mean, x)
    ref = decomposition.PCA(n_components=3).fit(filled)
    want = ref.transform(filled)
    for c in range(3):
        sign = np.sign(want[np.argmax(np.abs(want[:, c])), c])
        np.testing.assert_allclose(s[:, c], sign * want[:, c], atol=1e-8)
    np.testing.assert_allclose(vals / (n - 1), ref.explained_variance_, rtol=1e-10)
    flagged = pca.outliers(s, 6.0)
    assert [o.index for o in flagged] == [7] and abs(flagged[0].z) > 6
    # top: only the most variable features enter (10 of 40): a different, smaller Gram matrix
    assert pca.gram(norm, top=10).shape == (n, n) and not np.allclose(pca.gram(norm, top=10), g)


def test_outliers_robust_z_worked_out_by_hand() -> None:
    # one component: 1, 2, 3, 4, 100. median 3, |dev| 2, 1, 0, 1, 97 -> MAD 1, x1.4826 -> z(100) = 97 / 1.4826 = 65.4
    s = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    (o,) = pca.outliers(s, 6.0)
    assert (o.index, o.pc) == (4, 1) and o.z == pytest.approx(97 / 1.4826)
    assert pca.outliers(s, 70.0) == []
    assert pca.outliers(np.ones((5, 2)), 1.0) == []  # MAD 0: nothing flagged
