"""Held-out AUROC, AUPRC and Brier score per subgroup level in one pass (omicslake.ml.model.
ranking_metrics) against a hand-worked case, scikit-learn's roc_auc_score and MLlib's own
BinaryClassificationEvaluator (which keeps every threshold up to 1,000 distinct scores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.ml import model as M


def test_a_hand_worked_case(spark: SparkSession) -> None:
    # scores 0.9 0.8 0.7 0.6 with outcomes 1 0 1 0: of the 4 (case, control) pairs the case ranks
    # higher in 3 (AUROC 0.75); the PR curve (0, 1) (1/2, 1) (1/2, 1/2) (1, 2/3) (1, 1/2) has area
    # 1/2 + 0 + 1/2 * (1/2 + 2/3) / 2 + 0 = 19/24; Brier (0.01 + 0.64 + 0.09 + 0.36) / 4
    df = spark.createDataFrame([(0.9, 1), (0.8, 0), (0.7, 1), (0.6, 0)], "p double, label int")
    (got,) = M.ranking_metrics(df, {"all": F.lit("all")})
    assert got["n"] == 4 and got["cases"] == 2 and got["group"] == "all" and got["level"] == "all"
    assert got["auroc"] == pytest.approx(0.75, abs=1e-15)
    assert got["auprc"] == pytest.approx(19 / 24, abs=1e-15)
    assert got["brier"] == pytest.approx(1.10 / 4, abs=1e-15)
    # a tie between a case and a control counts half: 0.8 (1) and 0.8 (0) above 0.1 (0)
    tie = spark.createDataFrame([(0.8, 1), (0.8, 0), (0.1, 0)], "p double, label int")
    assert M.ranking_metrics(tie, {"all": F.lit("all")})[0]["auroc"] == pytest.approx(0.75, abs=1e-15)


def test_levels_equal_scikit_learn_and_mllibs_evaluator(spark: SparkSession) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    n = 3000
    sex = rng.choice(["female", "male"], n)
    band = rng.choice(["<45", "45-64", "65+", None], n, p=[0.3, 0.3, 0.3, 0.1])
    p = np.round(rng.uniform(0.01, 0.99, n), 2)  # 99 distinct scores: many ties, MLlib bins none
    y = rng.binomial(1, p * 0.6).astype(int)
    pdf = pd.DataFrame({"p": p, "label": y, "sex": sex, "band": band})
    df = spark.createDataFrame(pdf)
    cols = {"sex": F.col("sex"), "age_band": F.col("band"), "none_lost": F.lit("all")}
    got = M.ranking_metrics(df, cols)
    want_levels = [("sex", "female"), ("sex", "male")]
    want_levels += [("age_band", "None"), ("age_band", "45-64"), ("age_band", "65+"), ("age_band", "<45")]
    assert [(g["group"], g["level"]) for g in got] == [*want_levels, ("none_lost", "all")]
    for g in got:
        column = {"sex": "sex", "age_band": "band"}.get(g["group"])
        part = pdf if column is None else pdf[pdf[column].astype(str) == g["level"]]
        sdf = df if column is None else df.where(F.col(column).cast("string").eqNullSafe(F.lit(part[column].iloc[0])))
        assert g["n"] == len(part) and g["cases"] == int(part["label"].sum())
        assert g["brier"] == pytest.approx(float(np.mean((part["p"] - part["label"]) ** 2)), abs=1e-12)
        assert g["auroc"] == pytest.approx(roc_auc_score(part["label"], part["p"]), abs=1e-12)
        sdf = sdf.withColumn("label", F.col("label").cast("double"))
        for key, metric in (("auroc", "areaUnderROC"), ("auprc", "areaUnderPR")):
            ev = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="p", metricName=metric)
            assert g[key] == pytest.approx(ev.evaluate(sdf), abs=1e-12), (g["group"], g["level"], key)


def test_a_level_with_one_outcome_has_no_auroc_even_under_ansi_mode(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(0.9, 1, "a"), (0.2, 0, "a"), (0.4, 0, "b"), (0.3, 0, "b"), (0.7, 1, "c")], "p double, label int, g string"
    )
    ansi = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")  # a division by a level's 0 cases is an error there
    try:
        a, b, c = M.ranking_metrics(df, {"g": F.col("g")})
    finally:
        spark.conf.set("spark.sql.ansi.enabled", ansi)
    assert a["auroc"] == 1.0 and a["auprc"] == 1.0
    assert (b["level"], b["n"], b["cases"], b["auroc"], b["auprc"]) == ("b", 2, 0, None, None)
    assert (c["level"], c["n"], c["cases"], c["auroc"], c["auprc"]) == ("c", 1, 1, None, None)
    assert b["brier"] == pytest.approx((0.16 + 0.09) / 2, abs=1e-15)


@pytest.mark.parametrize("bad", [(None, 1), (float("nan"), 0), (0.5, None)])
def test_a_missing_label_or_score_is_an_error(spark: SparkSession, bad: tuple[float | None, int | None]) -> None:
    df = spark.createDataFrame([(0.9, 1), (0.2, 0), bad], "p double, label int")
    with pytest.raises(ValueError, match="1 rows with a null label or a null or NaN score"):
        M.ranking_metrics(df, {"all": F.lit("all"), "twice": F.lit("x")})
