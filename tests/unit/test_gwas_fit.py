"""The GWAS fits without a lake: tiny hand-made matrices against statsmodels (OLS, Logit) on the
called samples, the blocked fits of many variants against the one-by-one fits (missing calls,
constant, separated and collinear variants among them), and the Arrow -> int8 genotype matrix.
No Spark, well under a second each."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import statsmodels.api as sm

from omicslake.errors import InputError
from omicslake.genomics.gwas import Design, fit_block, fit_variant
from omicslake.genomics.gwas.distribute import calls_matrix, dosage_matrix

NAN = np.nan


def _design(y: list[float], cov: list[list[float]], binary: bool) -> Design:
    c = np.column_stack([np.ones(len(y)), np.array(cov, float)])
    return Design(np.arange(len(y)), [f"s{i}" for i in range(len(y))], np.array(y, float), c, ["c1"], binary)


# 12 samples, one covariate, typed by hand; the genotype has two missing calls (samples 3 and 9)
Y_LIN = [2.1, 3.4, 1.9, 4.4, 3.0, 5.2, 2.8, 4.1, 3.9, 1.5, 4.8, 3.3]
COV = [[0.5], [1.2], [-0.3], [2.0], [0.1], [1.7], [-1.1], [0.9], [1.4], [-0.8], [2.2], [0.0]]
G = [0, 1, 0, NAN, 1, 2, 0, 1, 2, NAN, 2, 1]


def test_linear_block_equals_statsmodels_ols_on_the_called_samples() -> None:
    d = _design(Y_LIN, COV, False)
    g = np.array(G, float)
    called = ~np.isnan(g)
    ref = sm.OLS(d.y[called], np.column_stack([d.covariates[called], g[called]])).fit()
    got = fit_block(g[None, :], d, "linear", "drop", "fallback").iloc[0]
    assert got.status == "ok" and got.n == 10 and not got.firth
    assert got.af == pytest.approx(np.nanmean(g) / 2, abs=1e-15)
    assert got.beta == pytest.approx(ref.params[-1], rel=1e-10)
    assert got.se == pytest.approx(ref.bse[-1], rel=1e-10)
    assert got.p == pytest.approx(ref.pvalues[-1], rel=1e-8)
    assert got.neg_log10_p == pytest.approx(-math.log10(ref.pvalues[-1]), rel=1e-8)


# 24 samples: a case/control outcome, one covariate, a genotype with one missing call (sample 5)
Y_LOG = [1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1]
COV_LOG = [
    [0.3],
    [-1.0],
    [0.8],
    [1.5],
    [-0.2],
    [0.0],
    [-1.4],
    [0.9],
    [0.2],
    [1.1],
    [-0.5],
    [0.4],
    [-0.9],
    [1.3],
    [0.6],
    [-0.1],
    [-0.7],
    [2.0],
    [0.5],
    [-1.2],
    [0.7],
    [1.0],
    [-0.3],
    [0.1],
]
G_LOG = [1, 0, 0, 2, 1, NAN, 0, 1, 1, 2, 0, 0, 1, 0, 2, 1, 0, 1, 0, 1, 1, 0, 1, 2]


def test_logistic_block_equals_statsmodels_logit_on_the_called_samples() -> None:
    d = _design(Y_LOG, COV_LOG, True)
    g = np.array(G_LOG, float)
    called = ~np.isnan(g)
    ref = sm.Logit(d.y[called], np.column_stack([d.covariates[called], g[called]])).fit(disp=0, tol=1e-12)
    got = fit_block(g[None, :], d, "logistic", "drop", "fallback").iloc[0]
    assert got.status == "ok" and got.n == 23 and not got.firth
    assert got.beta == pytest.approx(ref.params[-1], rel=1e-8)
    assert got.se == pytest.approx(ref.bse[-1], rel=1e-8)
    assert got.p == pytest.approx(ref.pvalues[-1], rel=1e-7)


def _random_block(rng: np.random.Generator, v: int, n: int) -> np.ndarray:
    g = rng.binomial(2, rng.uniform(0.05, 0.5, v)[:, None], (v, n)).astype(float)
    g[rng.random((v, n)) < 0.05] = NAN
    return g


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_block_fits_equal_one_by_one_fits_special_cases_included(model: str) -> None:
    rng = np.random.default_rng(3)
    n = 64
    cov = rng.normal(0, 1, (n, 2))
    y = (rng.random(n) < 0.4).astype(float) if model == "logistic" else rng.normal(0, 1, n) + cov[:, 0]
    d = Design(
        np.arange(n),
        [f"s{i}" for i in range(n)],
        y,
        np.column_stack([np.ones(n), cov]),
        ["a", "b"],
        model == "logistic",
    )
    g = _random_block(rng, 40, n)
    g[0] = 1.0  # constant
    g[1] = NAN  # no calls
    g[2, :] = NAN
    g[2, :3] = [0, 1, 2]  # too few samples
    g[3] = np.where(y == 1, 1.0, 0.0) if model == "logistic" else np.round(cov[:, 0] > 0)  # separated / plain
    g[4] = np.where(rng.random(n) < 0.5, 2.0, 0.0)
    if model == "linear":
        g[5] = (y - y.mean()) * 0 + np.round(cov[:, 1] * 0 + (np.arange(n) % 3))  # a plain one
    block = fit_block(g, d, model, "drop", "fallback")
    assert len(block) == len(g)
    for i, row in enumerate(g):
        n_i, af, f = fit_variant(row, d, model, "drop", "fallback")
        b = block.iloc[i]
        assert (b.n, b.status, bool(b.firth)) == (n_i, f.status, f.firth), i
        for col in ("af", "beta", "se", "statistic", "neg_log10_p"):
            x, ref = getattr(b, col), getattr(f, col) if col != "af" else af
            assert (math.isnan(x) and math.isnan(ref)) or x == pytest.approx(ref, rel=1e-9, abs=1e-12), (
                i,
                col,
                x,
                ref,
            )
    statuses = set(block.status)
    assert {"constant_genotype", "no_calls", "too_few_samples"} <= statuses
    if model == "logistic":
        assert block.firth.iloc[3]  # separated: Firth, as plink2


def test_dosage_matrix_from_arrow_lists() -> None:
    col = pa.array([[0, 1, None], [2, None, 0]], pa.list_(pa.int32()))
    m = dosage_matrix(col, 3)
    assert m.dtype == np.int8 and m.tolist() == [[0, 1, -1], [2, -1, 0]]
    with pytest.raises(InputError, match="hold 3 calls"):
        dosage_matrix(pa.array([[0, 1, 2], [1, 1]], pa.list_(pa.int32())), 3)


def test_calls_matrix_reads_one_byte_per_call() -> None:
    col = pa.array([b"01.2", b"2.10", b"..00"], pa.binary()).slice(1)  # a slice: offsets not from zero
    m = calls_matrix(col, 4)
    assert m.dtype == np.int8 and m.tolist() == [[2, -1, 1, 0], [-1, -1, 0, 0]]
    with pytest.raises(InputError, match="hold 4 calls"):
        calls_matrix(pa.array([b"012", b"0120"], pa.binary()), 4)
    with pytest.raises(InputError, match="'0', '1', '2' or '.'"):
        calls_matrix(pa.array([b"01/2"], pa.binary()), 4)
