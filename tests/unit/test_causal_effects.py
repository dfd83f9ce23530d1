"""causal.propensity, causal.balance, causal.epi on seeded numpy data, against statsmodels (Logit,
GLM Poisson / Binomial, exact Poisson intervals, weighted descriptive statistics) and against
formulas worked out in the test (IPTW weights, greedy matching)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pyspark.sql import DataFrame, SparkSession
from statsmodels.stats.rates import confint_poisson
from statsmodels.stats.weightstats import DescrStatsW

from omicslake.causal import balance, epi, propensity

COVS = ["age", "bmi", "female"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 2000
    age = rng.normal(60, 10, n)
    bmi = rng.normal(28, 5, n)
    female = rng.binomial(1, 0.5, n).astype(float)
    lin = -0.5 + 0.05 * (age - 60) + 0.08 * (bmi - 28) + 0.4 * female
    treated = rng.binomial(1, 1 / (1 + np.exp(-lin)))
    days = rng.integers(30, 2000, n).astype(float)
    rate = 0.0004 * np.exp(0.03 * (age - 60) + 0.3 * treated)
    events = rng.poisson(rate * days)
    band = np.where(age < 60, "<60", "60+")
    return pd.DataFrame(
        {
            "pid": np.arange(n),
            "age": age,
            "bmi": bmi,
            "female": female,
            "treated": treated,
            "days": days,
            "events": events,
            "any_event": (events > 0).astype(int),
            "band": band,
        }
    )


@pytest.fixture(scope="module")
def sdf(spark: SparkSession, data: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(data).repartition(3)


@pytest.fixture(scope="module")
def scored(sdf: DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    out, coefs = propensity.fit_ps(sdf, "treated", COVS, reg=0.0)
    return out.toPandas().sort_values("pid").reset_index(drop=True), coefs


def test_ps_model_against_statsmodels_logit(data: pd.DataFrame, scored: tuple[pd.DataFrame, dict[str, float]]) -> None:
    pdf, coefs = scored
    ref = sm.Logit(data["treated"], sm.add_constant(data[COVS])).fit(disp=0)
    assert abs(coefs["intercept"] - ref.params["const"]) < 1e-3
    for c in COVS:
        assert abs(coefs[c] - ref.params[c]) < 1e-4, c
    assert np.max(np.abs(pdf["ps"].to_numpy() - ref.predict())) < 1e-4
    share = data["treated"].mean()
    pref = 1 / (1 + np.exp(-(np.log(pdf["ps"] / (1 - pdf["ps"])) - np.log(share / (1 - share)))))
    assert np.max(np.abs(pdf["preference"] - pref)) < 1e-9


def test_iptw_weights(spark: SparkSession, scored: tuple[pd.DataFrame, dict[str, float]]) -> None:
    pdf, _ = scored
    sdf = spark.createDataFrame(pdf)
    t, ps, share = pdf["treated"].to_numpy(), pdf["ps"].to_numpy(), pdf["treated"].mean()
    expect = {
        ("ate", False): np.where(t == 1, 1 / ps, 1 / (1 - ps)),
        ("ate", True): np.where(t == 1, share / ps, (1 - share) / (1 - ps)),
        ("att", False): np.where(t == 1, 1.0, ps / (1 - ps)),
    }
    att = np.where(t == 1, 0, ps / (1 - ps))
    expect[("att", True)] = np.where(t == 1, 1.0, ps / (1 - ps) * (t == 0).sum() / att.sum())
    for (estimand, stab), w in expect.items():
        got = propensity.iptw(sdf, "treated", estimand, stab).toPandas().sort_values("pid")["weight"].to_numpy()
        assert np.max(np.abs(got - w)) < 1e-9, (estimand, stab)
    got = propensity.iptw(sdf, "treated", "ate", False, max_weight=3.0).toPandas().sort_values("pid")["weight"]
    assert np.max(np.abs(got.to_numpy() - np.minimum(expect[("ate", False)], 3.0))) < 1e-9
    with pytest.raises(ValueError, match="estimand must be"):
        propensity.iptw(sdf, "treated", "atc")


def test_smd_against_weighted_stats(spark: SparkSession, scored: tuple[pd.DataFrame, dict[str, float]]) -> None:
    pdf, _ = scored
    sdf = propensity.iptw(spark.createDataFrame(pdf), "treated", "ate", True)
    w = sdf.toPandas().sort_values("pid")
    before = balance.smd(sdf, "treated", COVS)
    after = balance.smd(sdf, "treated", COVS, weight="weight")
    for rows, weights in ((before, None), (after, w["weight"].to_numpy())):
        for r in rows:
            c = str(r["term"])
            t, cc = w["treated"] == 1, w["treated"] == 0
            a = DescrStatsW(w.loc[t, c], weights=None if weights is None else weights[t.to_numpy()], ddof=0)
            b = DescrStatsW(w.loc[cc, c], weights=None if weights is None else weights[cc.to_numpy()], ddof=0)
            ref = (a.mean - b.mean) / np.sqrt((a.var + b.var) / 2)
            assert abs(float(r["smd"]) - ref) < 1e-9, c  # type: ignore[arg-type]
    s = balance.summarise(before, after)
    assert s["max_abs_smd_before"] > 0.1  # the planted confounding shows
    assert s["max_abs_smd_after"] < 0.05  # and the weights remove it


def greedy_reference(lps: np.ndarray, t: np.ndarray, width: float) -> int:
    """Sequential greedy 1:1 nearest-neighbour matching within the caliper (pairs made), treated in
    order of their logit PS."""
    free = sorted(lps[t == 0].tolist())
    made = 0
    for x in sorted(lps[t == 1].tolist()):
        if not free:
            break
        i = int(np.searchsorted(free, x))
        cand = [j for j in (i - 1, i) if 0 <= j < len(free)]
        j = min(cand, key=lambda j: abs(free[j] - x))
        if abs(free[j] - x) <= width:
            free.pop(j)
            made += 1
    return made


def test_greedy_pairs_is_the_sequential_greedy_match() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 7, 300, 20_000):
        lps = rng.normal(0, 1, n).round(3)  # rounded: ties of distance and of logit PS
        t = (rng.random(n) < 1 / (1 + np.exp(-2 * lps))).astype(int)
        ids = [f"p{i:06d}" for i in range(n)]
        tr, co = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
        args = ([ids[i] for i in co], lps[co].tolist(), 0.05)
        got_t, got_c, dist = propensity.greedy_pairs([ids[i] for i in tr], lps[tr].tolist(), [1] * len(tr), *args)
        assert len(got_t) == greedy_reference(lps, t, 0.05), n
        assert len(set(got_t)) == len(got_t) and len(set(got_c)) == len(got_c)
        pos = dict(zip(ids, lps, strict=True))
        assert all(abs(pos[a] - pos[b]) == d <= 0.05 for a, b, d in zip(got_t, got_c, dist, strict=True))
        two_t, two_c, _ = propensity.greedy_pairs([ids[i] for i in tr], lps[tr].tolist(), [2] * len(tr), *args)
        assert len(set(two_c)) == len(two_c) and max(Counter(two_t).values(), default=2) <= 2
        assert set(got_t) <= set(two_t) and len(two_t) >= len(got_t)


@pytest.mark.slow  # about half a minute: three distributed matches
@pytest.mark.parametrize("cells", [1, 12])  # one cell (the sequential greedy) or twelve (shifted grids)
def test_matching(spark: SparkSession, scored: tuple[pd.DataFrame, dict[str, float]], cells: int) -> None:
    pdf, _ = scored
    sdf = spark.createDataFrame(pdf)
    width = 0.2 * pdf["logit_ps"].std()
    per_cell = len(pdf) // cells + 1
    m = propensity.match(sdf, "treated", "pid", ratio=1, caliper=0.2, cell_persons=per_cell).toPandas()
    assert m["pid"].is_unique  # without replacement
    sets = m.groupby("match_set")
    assert (sets["treated"].sum() == 1).all() and (sets.size() == 2).all()
    lps = m.set_index("pid")["logit_ps"]
    tid = m["match_set"].astype(int)
    assert np.max(np.abs(m["logit_ps"].to_numpy() - lps.loc[tid].to_numpy())) <= width + 1e-12
    ref = greedy_reference(pdf["logit_ps"].to_numpy(), pdf["treated"].to_numpy(), width)
    if cells == 1:
        assert len(m) // 2 == ref  # one cell: the sequential greedy itself
    # maximal: no treated person is left unmatched with a comparator still free within the caliper
    # (across a cell edge too: the shifted grid's rounds make those pairs)
    left = pdf[~pdf["pid"].isin(m["pid"])]
    free = np.sort(left.loc[left["treated"] == 0, "logit_ps"].to_numpy())
    for x in left.loc[left["treated"] == 1, "logit_ps"]:
        k = np.searchsorted(free, x)
        near = [abs(free[j] - x) for j in (k - 1, k) if 0 <= j < len(free)]
        assert not near or min(near) > width, x
    assert abs(len(m) // 2 - ref) <= 0.02 * ref  # as many pairs as sequential greedy, within 2 %
    if cells > 1:
        return
    after = balance.summarise(balance.smd(sdf, "treated", COVS), balance.smd(spark.createDataFrame(m), "treated", COVS))
    assert after["max_abs_smd_after"] < 0.1 < after["max_abs_smd_before"]
    m2 = propensity.match(sdf, "treated", "pid", ratio=2, caliper=0.2).toPandas()
    assert m2["pid"].is_unique
    assert m2.groupby("match_set").size().max() == 3 and (m2.groupby("match_set")["treated"].sum() == 1).all()


def test_matching_makes_the_pairs_across_cell_edges(spark: SparkSession) -> None:
    """A treated person just below each edge of the 2-wide cells, its only comparator within the
    caliper just above it: the grid's cells cannot pair them, the grid shifted by half a cell does."""
    lps = [0.0, 12.0] + [x for e in (2.0, 4.0, 6.0, 8.0, 10.0) for x in (e - 0.01, e + 0.01)]
    treated = [0, 0] + [1, 0] * 5
    sdf = spark.createDataFrame(pd.DataFrame({"pid": range(len(lps)), "treated": treated, "logit_ps": lps, "x": 0.0}))
    m = propensity.match(sdf, "treated", "pid", ratio=1, caliper=0.05, cell=2.0).toPandas()
    pairs = {(int(r.match_set), int(r.pid)) for r in m.itertuples() if r.treated == 0}
    assert pairs == {(i, i + 1) for i in range(2, 12, 2)}


def test_separation_and_empty_arm(spark: SparkSession, data: pd.DataFrame) -> None:
    bad = spark.createDataFrame(data.assign(marker=data["treated"] * 2.0 + 1))
    with pytest.raises(ValueError, match=r"covariates \['marker'\] predict treatment perfectly"):
        propensity.fit_ps(bad, "treated", [*COVS, "marker"])
    one = spark.createDataFrame(data[data["treated"] == 1])
    with pytest.raises(ValueError, match="an arm is empty"):
        propensity.fit_ps(one, "treated", COVS)


def test_covariates_that_jointly_predict_treatment_are_an_error(spark: SparkSession) -> None:
    """Each of a and b overlaps between the arms (the one-covariate check passes), but a + b > 0
    exactly for the treated: fit_ps refuses with a message naming the covariates; shifted so the
    arms overlap by one person, the same data fit."""
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-1, 1, 60), rng.uniform(-1, 1, 60)
    treated = (a + b > 0).astype(int)
    df = pd.DataFrame({"treated": treated, "a": a, "b": b})
    assert df.groupby("treated")["a"].agg(["min", "max"]).pipe(lambda g: g.loc[1, "min"] < g.loc[0, "max"])
    assert df.groupby("treated")["b"].agg(["min", "max"]).pipe(lambda g: g.loc[1, "min"] < g.loc[0, "max"])
    with pytest.raises(ValueError, match=r"covariates \['a', 'b'\] jointly predict treatment perfectly"):
        propensity.fit_ps(spark.createDataFrame(df), "treated", ["a", "b"])
    flipped = df.assign(treated=np.where(np.argmax(a + b) == np.arange(60), 0, treated))  # the most 'treated' is not
    scored, _ = propensity.fit_ps(spark.createDataFrame(flipped), "treated", ["a", "b"])
    assert scored.count() == 60


def test_incidence_against_exact_poisson(sdf: DataFrame, data: pd.DataFrame) -> None:
    rows = epi.incidence(sdf, "events", "days", by=["band"])
    assert [r["band"] for r in rows] == ["60+", "<60"]
    for r in rows:
        part = data[data["band"] == r["band"]]
        py = part["days"].sum() / 365.25
        k = int(part["events"].sum())
        lo, hi = confint_poisson(k, py / 1000, method="exact-c")
        assert r["events"] == k and abs(r["person_years"] - py) < 1e-9
        assert abs(r["rate"] - k / py * 1000) < 1e-9
        assert abs(r["rate_lower"] - lo) < 1e-9 * hi and abs(r["rate_upper"] - hi) < 1e-9 * hi
    (overall,) = epi.incidence(sdf, "events", "days")
    assert overall["events"] == data["events"].sum()


def test_poisson_and_logistic_against_statsmodels(sdf: DataFrame, data: pd.DataFrame) -> None:
    X = sm.add_constant(data[["treated", "age"]])
    ref = sm.GLM(data["events"], X, family=sm.families.Poisson(), offset=np.log(data["days"])).fit()
    got = {r["term"]: r for r in epi.poisson(sdf, "events", ["treated", "age"], "days")}
    for term, name in (("treated", "treated"), ("age", "age"), ("intercept", "const")):
        assert abs(float(got[term]["coef"]) - ref.params[name]) < 1e-6, term
        assert abs(float(got[term]["se"]) - ref.bse[name]) < 1e-6, term
    ref_l = sm.GLM(data["any_event"], X, family=sm.families.Binomial()).fit()
    got_l = {r["term"]: r for r in epi.logistic(sdf, "any_event", ["treated", "age"])}
    for term, name in (("treated", "treated"), ("age", "age"), ("intercept", "const")):
        assert abs(float(got_l[term]["coef"]) - ref_l.params[name]) < 1e-6, term
        assert abs(float(got_l[term]["se"]) - ref_l.bse[name]) < 1e-6, term


def test_kaplan_meier_at_risk(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        pd.DataFrame(
            {"arm": ["a"] * 5 + ["b"] * 3, "time": [1, 2, 2, 4, 5, 1, 3, 3], "event": [1, 1, 0, 1, 0, 0, 1, 1]}
        )
    )
    km = epi.kaplan_meier_by_arm(df, "arm")
    # by hand: arm a: 5 at risk at t=1 (1 event) -> 0.8; t=2: 4 at risk, 1 event -> 0.6; t=4: 2 at risk -> 0.3
    assert np.allclose(km["a"]["s"], [0.8, 0.6, 0.3, 0.3])
    assert epi.at_risk(km["a"], [0, 2, 3, 6]) == [5, 4, 2, 0]
    assert np.allclose(km["b"]["s"], [1.0, 0.0])
