"""Covariate balance between two arms: standardised mean differences (SMD), weighted or not.

SMD = (mean_treated - mean_comparator) / sqrt((var_treated + var_comparator) / 2), with weighted
means and variances (``sum w (x - m)^2 / sum w``) when a weight column is given. One Spark
aggregate pass for all covariates; the driver gets 5 numbers per covariate and arm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def smd(
    df: DataFrame, treatment: str, covariates: Sequence[str], weight: str | None = None
) -> list[dict[str, float | str | None]]:
    """One dict per covariate: term, mean_treated, mean_comparator, sd_treated, sd_comparator and
    smd (None when both arms have zero variance and equal means). Means and variances weighted by
    ``weight`` when given (variance = sum w (x - m)^2 / sum w in each arm)."""
    w = F.col(weight).cast("double") if weight else F.lit(1.0)
    aggs = []
    for arm in (1, 0):
        in_arm = F.col(treatment).cast("int") == arm
        aggs.append(F.sum(F.when(in_arm, w)).alias(f"sw{arm}"))
        for j, c in enumerate(covariates):
            x = F.col(c).cast("double")
            aggs.append(F.sum(F.when(in_arm, w * x)).alias(f"s{arm}_{j}"))
            aggs.append(F.sum(F.when(in_arm, w * x * x)).alias(f"q{arm}_{j}"))
    row = df.agg(*aggs).first()
    assert row is not None
    out: list[dict[str, float | str | None]] = []
    for j, c in enumerate(covariates):
        stats = {}
        for arm in (1, 0):
            sw = float(row[f"sw{arm}"] or 0.0)
            if sw <= 0:
                raise ValueError(f"balance: the {'treated' if arm else 'comparator'} arm is empty or has zero weight")
            m = float(row[f"s{arm}_{j}"] or 0.0) / sw
            v = max(float(row[f"q{arm}_{j}"] or 0.0) / sw - m * m, 0.0)
            stats[arm] = (m, v)
        (m1, v1), (m0, v0) = stats[1], stats[0]
        pooled = math.sqrt((v1 + v0) / 2)
        d: float | None = (m1 - m0) / pooled if pooled > 0 else (0.0 if m1 == m0 else None)
        out.append(
            {
                "term": c,
                "mean_treated": m1,
                "mean_comparator": m0,
                "sd_treated": math.sqrt(v1),
                "sd_comparator": math.sqrt(v0),
                "smd": d,
            }
        )
    return out


def summarise(
    before: list[dict[str, float | str | None]], after: list[dict[str, float | str | None]], threshold: float = 0.1
) -> dict[str, float]:
    """max |SMD| before and after, and the share of covariates with |SMD| > threshold in each."""

    def vals(rows: list[dict[str, float | str | None]]) -> list[float]:
        return [abs(float(r["smd"])) if r["smd"] is not None else math.inf for r in rows]  # type: ignore[arg-type]

    b, a = vals(before), vals(after)
    return {
        "max_abs_smd_before": max(b, default=0.0),
        "max_abs_smd_after": max(a, default=0.0),
        "share_over_threshold_before": sum(x > threshold for x in b) / max(len(b), 1),
        "share_over_threshold_after": sum(x > threshold for x in a) / max(len(a), 1),
    }
