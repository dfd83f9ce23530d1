"""SHAP reasons of tree models (omicslake.ml.shap_trees) against MLlib and against brute force.

Tiny seeded data: two numeric features (one with missing values), a 0/1 flag and a string feature
of three levels (plus missing), so a one-hot group exists; models fitted with the production
pipeline (``omicslake.ml.model.pipeline``: the scaler drops the one-hot metadata, every split is
continuous) and without the scaler (MLlib then splits the one-hot slots as categories, both
with the 0 and with the 1 on the left).

- SHAP values + base value = MLlib's own output for every row (GBT: 2 x margin = logit of its
  probability; random forest: its probability of class 1), to 1e-9.
- SHAP values = exact Shapley values by brute force: every subset S of the slots, v(S) the
  path-dependent conditional expectation of the ensemble given x_S (Lundberg et al. 2018,
  Algorithm 1: follow a split whose feature is in S, else average both children weighted by
  their covers), and the Shapley formula; to 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.ml.model import FeatureColumns, estimator, pipeline, preprocessing, with_class_weights
from omicslake.ml.risk import REASON
from omicslake.ml.shap_trees import Tree, TreeRisk, explain_frame, tree_arrays

N = 400
COLS = FeatureColumns(("x1", "x2", "flag"), ("grp",))


@pytest.fixture(scope="module")
def data(spark: SparkSession) -> Iterator[DataFrame]:
    rng = np.random.default_rng(20240611)
    x1 = rng.normal(size=N)
    x2 = rng.normal(size=N)
    x2_missing = rng.random(N) < 0.1
    flag = (rng.random(N) < 0.4).astype(float)
    grp = rng.choice(["a", "b", "c"], size=N, p=[0.5, 0.3, 0.2])
    grp_missing = rng.random(N) < 0.05
    eta = 1.5 * x1 + 0.5 * np.where(x2_missing, 0.0, x2) + flag + 1.2 * (grp == "a") - 2.0 * (grp == "c")
    label = (rng.random(N) < 1 / (1 + np.exp(-eta))).astype(float)
    rows = [
        (
            f"p{i:04d}",
            float(x1[i]),
            None if x2_missing[i] else float(x2[i]),
            float(flag[i]),
            None if grp_missing[i] else str(grp[i]),
            float(label[i]),
        )
        for i in range(N)
    ]
    df = spark.createDataFrame(rows, "person_key string, x1 double, x2 double, flag double, grp string, label double")
    # balanced class weights, as train fits: the covers are weighted counts
    weighted = with_class_weights(df, balanced=True).cache()
    yield weighted
    weighted.unpersist()


def _small(est: Any) -> Any:
    """A few shallow trees: 7 slots and few nodes keep the brute force (128 subsets) quick."""
    return est.setMaxIter(5).setMaxDepth(3) if hasattr(est, "setMaxIter") else est.setNumTrees(5).setMaxDepth(4)


@pytest.fixture(scope="module")
def models(data: DataFrame) -> dict[tuple[str, bool], PipelineModel]:
    """(kind, scaled) -> fitted pipeline; scaled = omicslake.ml.model.pipeline as train builds it."""
    out = {}
    for kind in ("gbt", "random_forest"):
        pipe, est = pipeline(COLS, kind, 3)
        _small(est)  # the estimator is the pipeline's last stage
        out[(kind, True)] = pipe.fit(data)
        out[(kind, False)] = Pipeline(stages=[*preprocessing(COLS, scale=False), _small(estimator(kind, 3))]).fit(data)
    return out


def _mllib(model: PipelineModel, df: DataFrame) -> pd.DataFrame:
    """MLlib's own output and the assembled vector the classifier saw, per row (tiny data)."""
    clf = model.stages[-1]
    return (
        model.transform(df)
        .select(
            "person_key",
            *COLS.all,
            vector_to_array(clf.getFeaturesCol()).alias("x"),
            vector_to_array("rawPrediction").alias("raw"),
            vector_to_array("probability").getItem(1).alias("p"),
        )
        .orderBy("person_key")
        .toPandas()
    )


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _expected_output(kind: str, m: pd.DataFrame) -> list[np.ndarray]:
    """What the explanation must add up to, by MLlib: GBT 2 x margin (rawPrediction is [-margin,
    margin]) and the logit of its probability; random forest its probability of class 1."""
    if kind == "gbt":
        return [2.0 * np.stack(m["raw"].to_numpy())[:, 1], _logit(m["p"].to_numpy())]
    return [m["p"].to_numpy()]


def _categorical_lefts(model: PipelineModel) -> set[tuple[float, ...]]:
    """leftCategories of every CategoricalSplit in the JVM trees (read here, not by the module)."""
    seen: set[tuple[float, ...]] = set()

    def walk(node: Any) -> None:
        if node.subtreeDepth() == 0:
            return
        split = node.split()
        if split.getClass().getSimpleName() == "CategoricalSplit":
            seen.add(tuple(float(c) for c in split.leftCategories()))
        walk(node.leftChild())
        walk(node.rightChild())

    for t in model.stages[-1].trees:
        walk(t._java_obj.rootNode())
    return seen


# ----------------------------------------------------------------------------- brute force


def _expvalue(tree: Tree, x: np.ndarray, s: frozenset[int]) -> np.ndarray:
    """Algorithm 1 of Lundberg et al. (2018) for all rows of x at once."""

    def g(j: int) -> np.ndarray:
        a, b = int(tree.children_left[j]), int(tree.children_right[j])
        if a < 0:
            return np.full(len(x), tree.value[j])
        d = int(tree.feature[j])
        if d in s:
            return np.where(x[:, d] <= tree.threshold[j], g(a), g(b))
        return (tree.cover[a] * g(a) + tree.cover[b] * g(b)) / tree.cover[j]

    return g(0)


def _brute_force_shapley(risk: TreeRisk, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, slots) exact Shapley values of v(S) = sum over trees of EXPVALUE, and v(empty set)."""
    m = x.shape[1]
    v = {}
    for size in range(m + 1):
        for s in combinations(range(m), size):
            key = frozenset(s)
            v[key] = np.sum([_expvalue(t, x, key) for t in risk.trees], axis=0)
    phi = np.zeros_like(x)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in combinations(others, size):
                key = frozenset(s)
                phi[:, i] += w * (v[key | {i}] - v[key])
    return phi, v[frozenset()]


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("scaled", [True, False], ids=["pipeline", "unscaled"])
@pytest.mark.parametrize("kind", ["gbt", "random_forest"])
def test_shap_values_add_up_to_mllib_output_for_every_row(
    data: DataFrame, models: dict[tuple[str, bool], PipelineModel], kind: str, scaled: bool
) -> None:
    model = models[(kind, scaled)]
    risk = TreeRisk.from_pipeline(model)
    m = _mllib(model, data)
    x = np.stack(m["x"].to_numpy())
    assert x.shape == (N, 3 + 4)  # x1, x2, flag, then grp: a, b, c, unseen/missing
    values, base = risk.shap_values(x)
    contrib = risk.contributions(values)
    assert contrib.shape == (N, 4)
    for want in _expected_output(kind, m):
        assert np.max(np.abs(risk.predict(x) - want)) < 1e-9
        assert np.max(np.abs(base + values.sum(axis=1) - want)) < 1e-9
        # one value per input feature: the one-hot slots summed, still adding up
        assert np.max(np.abs(base + contrib.sum(axis=1) - want)) < 1e-9
    np.testing.assert_allclose(contrib[:, :3], values[:, :3], rtol=0, atol=0)
    np.testing.assert_allclose(contrib[:, 3], values[:, 3:].sum(axis=1), rtol=0, atol=1e-15)
    assert risk.output == ("log-odds" if kind == "gbt" else "probability")
    # the string feature matters in the planted data: its summed SHAP value is not zero everywhere
    assert np.abs(contrib[:, 3]).max() > 0.01


def test_unscaled_models_split_one_hot_slots_as_categories_both_ways(
    models: dict[tuple[str, bool], PipelineModel],
) -> None:
    """The swap of children for a left category of 1 is exercised (and then checked by the sums
    above), and the production pipeline's scaler leaves no categorical split."""
    lefts = _categorical_lefts(models[("gbt", False)]) | _categorical_lefts(models[("random_forest", False)])
    assert lefts == {(0.0,), (1.0,)}
    assert _categorical_lefts(models[("gbt", True)]) == set()


@pytest.mark.parametrize("scaled", [True, False], ids=["pipeline", "unscaled"])
@pytest.mark.parametrize("kind", ["gbt", "random_forest"])
def test_shap_values_equal_brute_force_shapley_values(
    data: DataFrame, models: dict[tuple[str, bool], PipelineModel], kind: str, scaled: bool
) -> None:
    model = models[(kind, scaled)]
    risk = TreeRisk.from_pipeline(model)
    x = np.stack(_mllib(model, data)["x"].to_numpy())
    phi, v0 = _brute_force_shapley(risk, x)  # 7 slots: 128 subsets
    values, base = risk.shap_values(x)
    assert abs(base - float(v0[0])) < 1e-9
    assert np.max(np.abs(values - phi)) < 1e-6
    # per feature: the brute-force values of a one-hot group's slots, summed
    assert np.max(np.abs(risk.contributions(values) - risk.contributions(phi))) < 1e-6
    assert np.abs(phi).max() > 0.01  # not a comparison of zeros


def test_covers_are_the_weighted_training_rows_reaching_each_node(
    data: DataFrame, models: dict[tuple[str, bool], PipelineModel]
) -> None:
    """GBT (no subsampling): each node's cover is the sum of the class weights of the training rows
    routed to it; routing by the thresholds that reproduce MLlib's output above."""
    model = models[("gbt", True)]
    risk = TreeRisk.from_pipeline(model)
    m = _mllib(model, data).merge(data.select("person_key", "_w").toPandas(), on="person_key")
    x, w = np.stack(m["x"].to_numpy()), m["_w"].to_numpy()
    for tree in risk.trees:
        reach = np.zeros(len(tree.cover))
        node = np.zeros(len(x), dtype=int)
        active = np.ones(len(x), dtype=bool)
        while active.any():
            np.add.at(reach, node[active], w[active])
            i = np.flatnonzero(active)
            n = node[i]
            inner = tree.children_left[n] >= 0
            left = x[i, tree.feature[n]] <= tree.threshold[n]
            node[i] = np.where(inner, np.where(left, tree.children_left[n], tree.children_right[n]), n)
            active[i] = inner
        np.testing.assert_allclose(tree.cover, reach, rtol=1e-9)
    assert risk.trees[0].cover[0] == pytest.approx(float(m["_w"].sum()), rel=1e-12)


def test_layout_slots_are_the_assembled_vector(data: DataFrame, models: dict[tuple[str, bool], PipelineModel]) -> None:
    """The slot -> feature map (LinearRisk's layout) rebuilds Spark's assembled, scaled vector."""
    model = models[("random_forest", True)]
    risk = TreeRisk.from_pipeline(model)
    m = _mllib(model, data)
    lay = risk.layout
    z = (lay.design(m) - np.array(lay.mean)) / np.array(lay.std)
    np.testing.assert_allclose(z, np.stack(m["x"].to_numpy()), rtol=0, atol=1e-12)
    assert risk.features == ["x1", "x2", "flag", "grp"]
    assert list(risk.slot_starts()) == [0, 1, 2, 3]
    assert lay.modes == ("a",)


def test_explain_frame_writes_contributions_and_reasons(
    data: DataFrame, models: dict[tuple[str, bool], PipelineModel]
) -> None:
    """The Spark path the score job runs: JSON that parses into the REASON struct, contributions
    that add up to MLlib's log-odds, and the top 3 reasons in words."""
    model = models[("gbt", True)]
    risk = TreeRisk.from_pipeline(model)
    _, base = risk.shap_values(np.zeros((0, risk.n_slots)))
    why = explain_frame(model, risk, data, 3).select(
        "person_key",
        F.from_json("contributions_json", "map<string,double>").alias("contributions"),
        F.from_json("reasons_json", f"array<{REASON}>").alias("reasons"),
    )
    got = why.join(data, "person_key").orderBy("person_key").toPandas()
    m = _mllib(model, data)
    assert list(got["person_key"]) == list(m["person_key"])
    margin2 = 2.0 * np.stack(m["raw"].to_numpy())[:, 1]
    sums = np.array([sum(dict(c).values()) for c in got["contributions"]])
    assert np.max(np.abs(base + sums - margin2)) < 1e-9
    median = {c: data.approxQuantile(c, [0.5], 0.001)[0] for c in ("x1", "x2", "flag")}  # the imputer's
    for (_, row), reasons in zip(got.iterrows(), got["reasons"], strict=True):
        contrib = dict(row["contributions"])
        top = sorted(contrib.items(), key=lambda t: -abs(t[1]))[:3]
        assert [r["feature"] for r in reasons] == [f for f, _ in top]
        for r in reasons:
            assert r["contribution"] == contrib[r["feature"]]
            c = r["contribution"]
            verb, direction = (
                ("raises risk", "raises")
                if c > 0
                else ("lowers risk", "lowers")
                if c < 0
                else ("does not change risk", "none")
            )
            assert r["direction"] == direction and r["text"].endswith(verb)
            if r["feature"] == "grp":
                assert r["value"] is None and r["reference"] is None and r["level"] == row["grp"]
                assert "(most common: a)" in r["text"]
            else:
                raw = row[r["feature"]]
                assert r["level"] is None and r["reference"] == pytest.approx(median[r["feature"]], abs=1e-12)
                assert (r["value"] is None) if pd.isna(raw) else r["value"] == raw


def test_a_logistic_pipeline_is_refused(data: DataFrame) -> None:
    pipe, _ = pipeline(COLS, "logistic", 3)
    with pytest.raises(
        ValueError, match="TreeRisk needs a GBT or random forest classifier, not LogisticRegressionModel"
    ):
        TreeRisk.from_pipeline(pipe.fit(data))


def test_a_split_on_a_string_index_is_refused(data: DataFrame) -> None:
    """Without one-hot encoding MLlib splits the index of a 4-category feature: no threshold can
    say that, and the slots would not match the layout either."""
    stages = [
        StringIndexer(inputCols=["grp"], outputCols=["grp_idx"], handleInvalid="keep"),
        VectorAssembler(inputCols=["x1", "grp_idx"], outputCol="features"),
        _small(estimator("gbt", 3)),
    ]
    model = Pipeline(stages=stages).fit(data)
    with pytest.raises(ValueError, match=r"a categorical split of 4 categories \(left \[.*\]\); only binary one-hot"):
        for t in model.stages[-1].trees:
            tree_arrays(t._java_obj.rootNode(), lambda leaf: 0.0)
    with pytest.raises(ValueError, match="the classifier has 2 features but the preprocessing stages make 4 slots"):
        TreeRisk.from_pipeline(model)


def test_slot_values_of_the_wrong_width_are_refused(models: dict[tuple[str, bool], PipelineModel]) -> None:
    risk = TreeRisk.from_pipeline(models[("gbt", True)])
    with pytest.raises(ValueError, match="6 slot values per row but the model has 7 slots"):
        risk.contributions(np.zeros((2, 6)))
