"""SHAP reasons of tree models (GBT, random forest): numpy and pandas in and out, plus
``TreeRisk.from_pipeline``, which reads a fitted Spark PipelineModel.

- ``Tree``: one fitted MLlib decision tree as arrays in shap's (scikit-learn's) layout: node 0 the
  root, ``children_left`` / ``children_right`` (-1 at leaves), ``feature`` (a slot of the assembled
  vector), ``threshold`` (left when x <= threshold, as MLlib's ContinuousSplit), ``value`` (the
  leaf's share of the explained output) and ``cover`` (the node's weighted training count, MLlib's
  impurity stats). MLlib makes a binary one-hot slot a two-category feature when its metadata
  reaches the classifier (no scaler in between): such a CategoricalSplit becomes threshold 0.5,
  the children swapped when the left category is 1.
- What is explained: GBT, the log-odds of MLlib's probability, 2 x sum_i treeWeights[i] tree_i(x)
  (MLlib's probability is 1 / (1 + exp(-2 margin))), so each leaf value is scaled by
  2 x treeWeight; random forest, MLlib's probability of class 1, the mean over the trees of the
  leaf's class-1 share of its (weighted) training rows.
- ``TreeRisk``: the trees and the preprocessing's layout (slots -> features, medians, most common
  levels: the numbers ``LinearRisk`` holds, with no coefficients). ``shap_values``: path-dependent
  TreeSHAP (``shap.TreeExplainer`` on the trees as a dict; the covers are the background
  distribution) per slot of the assembled vector; ``contributions``: one-hot slots summed onto
  their feature, so each row adds up to the model output minus the base value; ``reasons``: the
  top k in words (``LinearRisk.reasons``: same struct, same words as the logistic model's).
- ``explain_frame``: per patient the contributions and reasons as JSON, the columns the score job
  writes for every model type.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from omicslake.ml.risk import LinearRisk

TREE_MODELS = {"GBTClassificationModel": "gbt", "RandomForestClassificationModel": "random_forest"}
SLOTS = "_slots"  # the assembled vector as array<double>, handed to the mapInPandas function
OUT_SCHEMA = "person_key string, contributions_json string, reasons_json string"


@dataclass(frozen=True, eq=False)
class Tree:
    """One tree as arrays (see the module docstring); ``value`` at internal nodes is the
    cover-weighted mean of the leaves below (the expectation shap computes again)."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    cover: np.ndarray

    def as_shap(self) -> dict[str, np.ndarray]:
        """The tree in the dict form ``shap.TreeExplainer`` reads (one output per node)."""
        return {
            "children_left": self.children_left,
            "children_right": self.children_right,
            "children_default": self.children_left,  # the imputer leaves no missing value
            "features": self.feature,
            "thresholds": self.threshold,
            "values": self.value.reshape(-1, 1),
            "node_sample_weight": self.cover,
        }

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of x (n, slots) lands in."""
        node = np.zeros(x.shape[0], dtype=int)
        while True:
            inner = self.children_left[node] >= 0
            if not inner.any():
                return node
            i = np.flatnonzero(inner)
            n = node[i]
            left = x[i, self.feature[n]] <= self.threshold[n]
            node[i] = np.where(left, self.children_left[n], self.children_right[n])


def tree_arrays(root: Any, leaf_value: Callable[[Any], float]) -> Tree:
    """A tree from its JVM root node (``tree._java_obj.rootNode()``), nodes numbered depth-first
    (left first); ``leaf_value(node)``: the leaf's value in the explained units. One py4j round trip
    per node attribute: ~0.5 ms a node."""
    left: list[int] = []
    right: list[int] = []
    feature: list[int] = []
    threshold: list[float] = []
    value: list[float] = []
    cover: list[float] = []

    def add(node: Any) -> int:
        i = len(left)
        left.append(-1)
        right.append(-1)
        feature.append(-1)
        threshold.append(0.0)
        value.append(0.0)
        cover.append(float(node.impurityStats().count()))
        if node.subtreeDepth() == 0:
            value[i] = leaf_value(node)
            return i
        split = node.split()
        slot = int(split.featureIndex())
        first, second = node.leftChild(), node.rightChild()
        if split.getClass().getSimpleName() == "CategoricalSplit":
            cats = sorted(float(c) for c in split.leftCategories())
            if int(split.numCategories()) != 2 or cats not in ([0.0], [1.0]):
                raise ValueError(
                    f"slot {slot}: a categorical split of {int(split.numCategories())} categories (left {cats}); "
                    "only binary one-hot slots (values 0 and 1) are supported"
                )
            threshold[i] = 0.5
            if cats == [1.0]:  # left holds the rows with 1: those above 0.5
                first, second = second, first
        else:
            threshold[i] = float(split.threshold())
        feature[i] = slot
        left[i] = add(first)
        right[i] = add(second)
        value[i] = (cover[left[i]] * value[left[i]] + cover[right[i]] * value[right[i]]) / (
            cover[left[i]] + cover[right[i]]
        )
        return i

    add(root)
    return Tree(
        np.array(left, dtype=np.int32),
        np.array(right, dtype=np.int32),
        np.array(feature, dtype=np.int32),
        np.array(threshold, dtype=np.float64),
        np.array(value, dtype=np.float64),
        np.array(cover, dtype=np.float64),
    )


def tree_kind(model: Any) -> str | None:
    """'gbt' or 'random_forest' when a PipelineModel ends in one of those classifiers, else None."""
    return TREE_MODELS.get(type(model.stages[-1]).__name__)


@dataclass(frozen=True, eq=False)
class TreeRisk:
    """A fitted GBT or random-forest pipeline as trees over the assembled slots plus the layout
    that maps slots to features. ``output``: 'log-odds' (GBT) or 'probability' (random forest)."""

    kind: str
    output: str
    trees: tuple[Tree, ...]
    layout: LinearRisk

    @property
    def features(self) -> list[str]:
        """The input features, one contribution each: numeric, then string features."""
        return self.layout.features

    @property
    def n_slots(self) -> int:
        """The length of the assembled vector the trees split on."""
        return len(self.layout.coef)

    @staticmethod
    def from_pipeline(model: Any, units: dict[str, str] | None = None) -> TreeRisk:
        """The trees of a fitted PipelineModel ending in a GBTClassificationModel or a
        RandomForestClassificationModel (py4j walks of the JVM trees, on the driver)."""
        kind = tree_kind(model)
        clf = model.stages[-1]
        if kind is None:
            raise ValueError(f"TreeRisk needs a GBT or random forest classifier, not {type(clf).__name__}")
        if int(clf.numClasses) != 2:
            raise ValueError(f"TreeRisk explains binary classifiers; this one has {clf.numClasses} classes")
        lay = LinearRisk.preprocessing(model, units)
        if int(clf.numFeatures) != len(lay.coef):
            raise ValueError(
                f"the classifier has {clf.numFeatures} features but the preprocessing stages make {len(lay.coef)} "
                "slots (numeric features, then each string feature's levels and one slot for unseen levels)"
            )
        if kind == "gbt":
            trees = tuple(
                # default arguments bind this tree's weight
                tree_arrays(t._java_obj.rootNode(), lambda leaf, s=2.0 * float(w): s * float(leaf.prediction()))
                for t, w in zip(clf.trees, clf.treeWeights, strict=True)
            )
            return TreeRisk(kind, "log-odds", trees, lay)
        share = 1.0 / len(clf.trees)
        trees = tuple(
            # prob(1.0): the class-1 share of the leaf's weighted training rows, as MLlib's predictRaw sums
            tree_arrays(t._java_obj.rootNode(), lambda leaf: share * float(leaf.impurityStats().prob(1.0)))
            for t in clf.trees
        )
        return TreeRisk(kind, "probability", trees, lay)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The explained output of each row of x (n, slots): the sum of its leaves' values."""
        x = np.asarray(x, dtype=np.float64)
        return np.sum([t.value[t.leaves(x)] for t in self.trees], axis=0) if self.trees else np.zeros(len(x))

    def explainer(self) -> Any:
        """shap's TreeExplainer of the trees, path-dependent (no background data: the covers)."""
        with warnings.catch_warnings():  # shap's colour maps call matplotlib API due for deprecation
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import shap  # imported here: it loads numba, seconds, and only scoring a tree model needs it

        model = {"trees": [t.as_shap() for t in self.trees], "base_offset": 0.0, "input_dtype": np.float64}
        return shap.TreeExplainer(model, feature_perturbation="tree_path_dependent", model_output="raw")

    def shap_values(self, x: np.ndarray, explainer: Any = None) -> tuple[np.ndarray, float]:
        """(n, slots) SHAP values of the rows of x and the base value: each row's values plus the base
        value equal ``predict``."""
        e = explainer if explainer is not None else self.explainer()
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.n_slots)
        base = float(np.ravel(e.expected_value)[0])  # one output: shap gives an array of one
        if len(x) == 0:
            return np.zeros((0, self.n_slots)), base
        return np.asarray(e.shap_values(x), dtype=np.float64).reshape(len(x), self.n_slots), base

    def slot_starts(self) -> np.ndarray:
        """The first slot of each feature: one per numeric feature, then each string feature's
        block of its levels plus the unseen slot (the assembler's and ``LinearRisk``'s order)."""
        k = len(self.layout.numeric)
        sizes = [1] * k + [len(lv) + 1 for lv in self.layout.levels]
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int) if sizes else np.zeros(0, dtype=int)

    def contributions(self, slot_values: np.ndarray) -> np.ndarray:
        """(n, features): SHAP values of the slots summed per feature."""
        s = np.asarray(slot_values, dtype=np.float64)
        if s.shape[1] != self.n_slots:
            raise ValueError(f"{s.shape[1]} slot values per row but the model has {self.n_slots} slots")
        if s.shape[0] == 0:
            return np.zeros((0, len(self.features)))
        return np.add.reduceat(s, self.slot_starts(), axis=1)

    def reasons(self, rows: Any, contributions: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """Top ``k`` features by |SHAP value| per row, with value, reference and words."""
        return self.layout.reasons(rows, contributions, k)


def explain(risk: TreeRisk, k: int) -> Any:
    """mapInPandas function: rows of person_key, the raw features and ``SLOTS`` (the assembled
    vector) -> person_key, contributions_json, reasons_json."""

    def f(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        explainer = risk.explainer()  # once per task
        feats = risk.features
        for pdf in batches:
            x = np.stack(pdf[SLOTS].to_numpy()) if len(pdf) else np.zeros((0, risk.n_slots))
            values, _ = risk.shap_values(x, explainer)
            contrib = risk.contributions(values)
            reasons = risk.reasons(pdf, contrib, k)
            out = pdf[["person_key"]].copy()
            out["contributions_json"] = [json.dumps(dict(zip(feats, map(float, row), strict=True))) for row in contrib]
            out["reasons_json"] = [json.dumps(r) for r in reasons]
            yield out

    return f


def explain_frame(model: Any, risk: TreeRisk, df: DataFrame, k: int) -> DataFrame:
    """person_key, contributions_json, reasons_json for df's rows: the pipeline's stages before the
    classifier assemble each row's vector (as the classifier sees it), SHAP per partition."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array

    clf = model.stages[-1]
    assembled = PipelineModel(stages=model.stages[:-1]).transform(df)
    return assembled.select(
        "person_key", *risk.features, vector_to_array(clf.getFeaturesCol()).alias(SLOTS)
    ).mapInPandas(explain(risk, k), OUT_SCHEMA)
