"""ml.survival.risk_cuts / risk_group: risk tertiles of the linear predictor (tests/data/survival_risk/<case>/)."""

from __future__ import annotations

import chispa
import numpy as np
from pyspark.sql import SparkSession
from scenario import folder, read_csv

from omicslake.ml import survival as S


def test_tertiles(spark: SparkSession) -> None:
    d = folder("survival_risk", "tertiles")
    lp = read_csv(spark, d / "lp.csv", "person string, lp double")
    expected = read_csv(spark, d / "expected.csv", "person string, lp double, risk_group string")
    cuts = S.risk_cuts(lp)
    values = [r.lp for r in lp.collect() if r.lp is not None]
    assert cuts == (3.0, 6.0) == tuple(np.quantile(values, [1 / 3, 2 / 3], method="inverted_cdf"))
    chispa.assert_df_equality(
        lp.withColumn("risk_group", S.risk_group(cuts)), expected, ignore_row_order=True, ignore_nullable=True
    )
