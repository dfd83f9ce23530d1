"""Psychometrics against pingouin and factor_analyzer on the same data (seeded simulated Likert
items with a planted two-factor structure, reverse-keyed items and missing answers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omicslake.survey import psychometrics as P


def _items(n: int = 300, seed: int = 3) -> np.ndarray:
    """n x 8 Likert (1-5) items: items 0-4 load on trait A, 5-7 on trait B; item 2 reverse keyed."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    lam = np.array([0.8, 0.7, -0.6, 0.75, 0.65])
    xa = a[:, None] * lam + rng.standard_normal((n, 5)) * 0.6
    xb = b[:, None] * np.array([0.8, 0.7, 0.6]) + rng.standard_normal((n, 3)) * 0.6
    x = np.clip(np.round(3 + np.hstack([xa, xb])), 1, 5)
    return x


def _with_missing(x: np.ndarray, seed: int = 4) -> np.ndarray:
    x = x.copy()
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.03] = np.nan
    return x


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return _items()


def test_alpha_and_ci_equal_pingouin(items: np.ndarray) -> None:
    pg = pytest.importorskip("pingouin")
    for x in (items[:, :5], items[:, 5:], _with_missing(items)):
        alpha, low, high = P.cronbach_alpha(x, ci=0.95)
        ref, _ = pg.cronbach_alpha(pd.DataFrame(x), nan_policy="listwise", ci=0.95)
        assert alpha == pytest.approx(ref, abs=1e-9)
        # pingouin's interval counts rows with a missing item in its degrees of freedom (n before the
        # listwise drop): compare on the complete rows; and it rounds the interval to 3 decimals
        _, ref_ci = pg.cronbach_alpha(pd.DataFrame(x).dropna(), ci=0.95)
        assert (round(low, 3), round(high, 3)) == tuple(ref_ci)


def test_alpha_if_deleted_and_item_total_equal_references(items: np.ndarray) -> None:
    pg = pytest.importorskip("pingouin")
    x = _with_missing(items[:, :5])
    s = P.item_stats(x)
    complete = pd.DataFrame(x).dropna()
    for i in range(5):
        ref, _ = pg.cronbach_alpha(complete.drop(columns=i), nan_policy="listwise")
        assert s.alpha_if_deleted[i] == pytest.approx(ref, abs=1e-9)
        rest = complete.drop(columns=i).sum(axis=1)
        assert s.item_total[i] == pytest.approx(complete[i].corr(rest), abs=1e-9)  # pandas' Pearson
    assert s.item_total[2] < 0  # the reverse-keyed item, not yet reversed, correlates negatively


@pytest.fixture()
def factor_analyzer(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """factor_analyzer 0.5.1 calls scikit-learn's check_array with force_all_finite, which
    scikit-learn 1.8 renamed ensure_all_finite: translate the keyword (the only change)."""
    fa = pytest.importorskip("factor_analyzer")
    import factor_analyzer.factor_analyzer as module
    from sklearn.utils import check_array

    def compatible(*args, force_all_finite=True, **kwargs):  # type: ignore[no-untyped-def]
        return check_array(*args, ensure_all_finite=force_all_finite, **kwargs)

    monkeypatch.setattr(module, "check_array", compatible)
    return fa


def test_loadings_and_omega_equal_factor_analyzer(items: np.ndarray, factor_analyzer) -> None:  # type: ignore[no-untyped-def]
    fa = factor_analyzer
    one = fa.FactorAnalyzer(n_factors=1, rotation=None, method="minres").fit(items[:, :5])
    ref1 = one.loadings_[:, 0] * np.sign(one.loadings_[:, 0].sum())
    ours1 = P.factor_loadings(items[:, :5], 1)[:, 0]
    assert np.max(np.abs(ours1 - ref1)) < 1e-3
    s = ref1.sum() ** 2
    ref_omega = s / (s + (1 - ref1**2).sum())
    assert P.omega(items[:, :5]) == pytest.approx(ref_omega, abs=1e-6)
    # factor_analyzer's unrotated minres loadings, rotated by its own varimax run to convergence
    # (its default tolerance, 1e-5, stops before the varimax criterion's maximum)
    unrotated = fa.FactorAnalyzer(n_factors=2, rotation=None, method="minres").fit(items).loadings_
    ref2 = fa.Rotator(method="varimax", tol=1e-13, max_iter=100_000).fit_transform(unrotated)
    ours2 = P.factor_loadings(items, 2)
    # up to the order and sign of the factors
    best = min(
        np.max(np.abs(ours2[:, perm] * signs - ref2))
        for perm in ([0, 1], [1, 0])
        for signs in (np.array([1, 1]), np.array([1, -1]), np.array([-1, 1]), np.array([-1, -1]))
    )
    assert best < 1e-3


def test_parallel_analysis_finds_the_two_planted_factors(items: np.ndarray) -> None:
    n, observed, random = P.parallel_analysis(items, iterations=50, seed=1)
    assert n == 2
    assert observed[1] > random[1] and observed[2] < random[2]
    assert P.parallel_analysis(items[:, :5], iterations=50, seed=1)[0] == 1


def test_icc_equals_pingouin() -> None:
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(9)
    true = rng.normal(20, 5, 80)
    y = np.column_stack([true + rng.normal(0, 2, 80), true + 1.5 + rng.normal(0, 2, 80)])
    y[3, 1] = np.nan
    icc2, icc3 = P.icc(y)
    long = pd.DataFrame([(i, e, y[i, e]) for i in range(80) for e in range(2) if i != 3], columns=["t", "r", "score"])
    ref = pg.intraclass_corr(long, targets="t", raters="r", ratings="score").set_index("Type")["ICC"]
    assert icc2 == pytest.approx(ref["ICC(A,1)"], abs=1e-9)  # ICC2: two-way random, absolute agreement
    assert icc3 == pytest.approx(ref["ICC(C,1)"], abs=1e-9)  # ICC3: two-way mixed, consistency
    assert icc2 < icc3  # the planted 1.5-point shift between occasions costs agreement, not consistency


def test_floor_and_ceiling_shares() -> None:
    assert P.floor_ceiling(np.array([0, 0, 5, 27, 27, 27, np.nan, 13]), 0, 27) == (2 / 7, 3 / 7)
