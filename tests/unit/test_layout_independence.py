"""The same rows give the same model and the same Table 1, however the input is laid out.

A rerun after a crash (tests/reliability/test_kill_anywhere.py), a compacted table or a lake
copied to another store holds the same rows as before in other files and partitions. Spark's
seeded sampling (cross-validation's random folds, k-means' initialisation) draws per
partition, and percentiles and floating-point sums follow the row order, so without a canonical
layout the same features gave another model: every prediction differed in a CI run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from omicslake.features.table1 import table1
from omicslake.ml import model as M


def _people(n: int = 400, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(50, 10, size=n)
    p = 1 / (1 + np.exp(-(-1.0 + 0.8 * x1 + 0.03 * (x2 - 50))))
    return pd.DataFrame(
        {
            "person_key": [f"p{i:05d}" for i in range(n)],
            "x1": x1,
            "x2": x2,
            "sex": rng.choice(["female", "male"], size=n),
            "label": (rng.uniform(size=n) < p).astype(float),
        }
    )


def _layouts(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    """The same rows twice: in one partition in key order, and in 3 partitions in reverse order."""
    pdf = _people()
    one = spark.createDataFrame(pdf).coalesce(1)
    three = spark.createDataFrame(pdf.iloc[::-1].reset_index(drop=True)).repartition(3)
    assert one.rdd.getNumPartitions() != three.rdd.getNumPartitions()
    return one, three


def _fit(df: DataFrame) -> tuple[list[float], float]:
    cols = M.feature_columns(df, exclude=("person_key", "label"))
    train = M.with_class_weights(df, False)
    model, _, val_auc = M.tune(train, cols, "logistic", {"regParam": [0.01, 0.1]}, seed=3, folds=2)
    lr = model.stages[-1]
    return [*lr.coefficients.toArray().tolist(), lr.intercept], val_auc


def test_tune_gives_the_same_model_whatever_the_partitions(spark: SparkSession) -> None:
    one, three = _layouts(spark)
    assert _fit(one) == _fit(three)  # exactly: the same folds, the same coefficients


def test_table1_is_the_same_whatever_the_partitions(spark: SparkSession) -> None:
    one, three = _layouts(spark)
    a, b = (table1(spark, df, ["x1", "x2", "sex"]).collect() for df in (one, three))
    assert a == b


def test_table1_mean_that_the_row_order_rounds_either_way(spark: SparkSession) -> None:
    # summed in this order the mean is 1.015 ("1.01" at two decimals); summed backwards it is
    # 1.0150000000000001 ("1.02"): only a canonical order prints one of them for both layouts
    y = [1.27, 0.54, 0.08, 0.03, 1.63, 1.83, 1.21, 1.53]
    assert sum(y) / 8 != sum(y[::-1]) / 8
    rows = [(0, v) for v in y] + [(1, 2.0), (1, 3.0)]
    fwd = spark.createDataFrame(rows, "label int, y double").coalesce(1)
    back = spark.createDataFrame(rows[::-1], "label int, y double").coalesce(1)
    a, b = ({r.variable: r for r in table1(spark, df, ["y"]).collect()}["y"] for df in (fwd, back))
    assert a.outcome_0 == b.outcome_0, (a.outcome_0, b.outcome_0)
    assert a.outcome_0.startswith(("1.01 (", "1.02 ("))


def test_canonical_partitions_hold_the_same_rows_in_the_same_order(spark: SparkSession) -> None:
    from omicslake.frames import canonical

    one, three = _layouts(spark)
    a, b = (canonical(df, ["person_key"], rows_per_partition=150).rdd.glom().collect() for df in (one, three))
    assert len(a) == 3  # 400 rows, one partition per 150
    assert [[r.person_key for r in p] for p in a] == [[r.person_key for r in p] for p in b]
    assert all(p == sorted(p, key=lambda r: r.person_key) for p in a)


def test_a_grid_of_one_point_is_the_model_cross_validation_refits(spark: SparkSession) -> None:
    """One point has nothing to choose: tune fits it once, without folds, and returns what
    cross-validation would have refitted (a grid of the same point twice goes through the folds)."""
    one, _ = _layouts(spark)
    cols = M.feature_columns(one, exclude=("person_key", "label"))
    train = M.with_class_weights(one, False)
    single, params, auc = M.tune(train, cols, "logistic", {"regParam": [0.3]}, seed=3)
    folded, _, folded_auc = M.tune(train, cols, "logistic", {"regParam": [0.3, 0.3]}, seed=3, folds=2)
    assert params == {"regParam": 0.3} and auc is None and folded_auc is not None
    a, b = single.stages[-1], folded.stages[-1]
    assert a.getRegParam() == 0.3
    assert [*a.coefficients.toArray(), a.intercept] == [*b.coefficients.toArray(), b.intercept]
