"""Table 1: descriptive statistics of a cohort's features by outcome (pure transforms).

Continuous variables: n with a value, mean (SD), median [IQR] and the standardised mean
difference (mean1 - mean0) / sqrt((sd1^2 + sd0^2) / 2). Binary 0/1 variables and the levels of a
categorical (string) variable: count (%) and the SMD of proportions (p1 - p0) / sqrt((p1(1-p1) +
p0(1-p0)) / 2). Percentages use the group's size as the denominator (missing values count as
"not"), as most papers print them; ``missing`` gives the count without a value.

All statistics come from one aggregation per variable kind over the whole cohort (quantiles by
``percentile_approx`` with accuracy 10,000, i.e. within 0.01 % of the rank), so the table costs
a few passes, not one per cell.
"""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from omicslake.frames import canonical

SCHEMA = T.StructType(
    [
        T.StructField("variable", T.StringType(), False),
        T.StructField("level", T.StringType(), True),
        T.StructField("kind", T.StringType(), False),
        T.StructField("overall", T.StringType(), True),
        T.StructField("outcome_0", T.StringType(), True),
        T.StructField("outcome_1", T.StringType(), True),
        T.StructField("smd", T.DoubleType(), True),
        T.StructField("n_0", T.LongType(), True),
        T.StructField("n_1", T.LongType(), True),
        T.StructField("missing", T.LongType(), True),
        T.StructField("row", T.IntegerType(), False),
    ]
)
MAX_LEVELS = 12


def _fmt(x: float | None) -> str:
    """One decimal for values of 10 and more, two below 10, three below 1 (slopes, creatinine)."""
    if x is None or math.isnan(x):
        return "NA"
    digits = 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:.{digits}f}"


def _smd_cont(m1: float | None, s1: float | None, m0: float | None, s0: float | None) -> float | None:
    if None in (m1, s1, m0, s0):
        return None
    pooled = math.sqrt(((s1 or 0) ** 2 + (s0 or 0) ** 2) / 2)  # type: ignore[operator]
    return None if pooled == 0 else round((m1 - m0) / pooled, 4)  # type: ignore[operator]


def _smd_prop(p1: float, p0: float) -> float | None:
    pooled = math.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    return None if pooled == 0 else round((p1 - p0) / pooled, 4)


def table1(spark: SparkSession, df: DataFrame, variables: list[str], label: str = "label") -> DataFrame:
    """Rows: ``n`` first, then each variable (continuous: one row; binary: one row; categorical:
    one row per level, the most frequent first, at most MAX_LEVELS)."""
    # percentiles and floating-point sums follow the row order: on the canonical layout the same
    # rows give the same table, however the features table's files came to be
    df = canonical(df.select(*dict.fromkeys([label, *variables])))
    groups = {0: F.col(label) == 0, 1: F.col(label) == 1}
    types = dict(df.dtypes)
    numeric = [v for v in variables if types[v] not in ("string", "boolean")]
    categorical = [v for v in variables if types[v] in ("string", "boolean")]
    # which numeric variables are 0/1 flags (one pass: min, max and distinct-count bound)
    exprs: list[Any] = [F.count(F.when(g, 1)).alias(f"n_{k}") for k, g in groups.items()]
    for v in numeric:
        exprs += [
            F.min(v).alias(f"{v}__min"),
            F.max(v).alias(f"{v}__max"),
            F.count(F.when(~F.col(v).cast("double").isin(0.0, 1.0), 1)).alias(f"{v}__nonbin"),
        ]
        for k, g in groups.items():
            x = F.when(g, F.col(v).cast("double"))
            exprs += [
                F.count(x).alias(f"{v}__n{k}"),
                F.avg(x).alias(f"{v}__mean{k}"),
                F.stddev_samp(x).alias(f"{v}__sd{k}"),
                F.percentile_approx(x, [0.25, 0.5, 0.75], 10000).alias(f"{v}__q{k}"),
                F.sum(x).alias(f"{v}__sum{k}"),
            ]
        x = F.col(v).cast("double")
        exprs += [
            F.count(x).alias(f"{v}__nall"),
            F.avg(x).alias(f"{v}__meanall"),
            F.stddev_samp(x).alias(f"{v}__sdall"),
            F.percentile_approx(x, [0.25, 0.5, 0.75], 10000).alias(f"{v}__qall"),
            F.sum(x).alias(f"{v}__sumall"),
        ]
    r = df.agg(*exprs).first()
    assert r is not None
    n0, n1 = int(r["n_0"]), int(r["n_1"])
    n = n0 + n1
    rows: list[tuple[Any, ...]] = [("n", None, "count", str(n), str(n0), str(n1), None, n0, n1, 0, 0)]
    for v in variables:
        if v in numeric:
            binary = int(r[f"{v}__nonbin"]) == 0 and r[f"{v}__min"] is not None
            missing = n - int(r[f"{v}__nall"])
            if binary:
                s0, s1, sa = (float(r[f"{v}__sum{k}"] or 0) for k in (0, 1, "all"))
                p0, p1, pa = s0 / max(n0, 1), s1 / max(n1, 1), sa / max(n, 1)
                cells = [f"{int(c)} ({100 * p:.1f}%)" for c, p in ((sa, pa), (s0, p0), (s1, p1))]
                rows.append((v, None, "binary", *cells, _smd_prop(p1, p0), n0, n1, missing, 0))
            else:

                def cell(k: Any, v: str = v) -> str:
                    q = r[f"{v}__q{k}"] or [None, None, None]
                    return f"{_fmt(r[f'{v}__mean{k}'])} ({_fmt(r[f'{v}__sd{k}'])}); {_fmt(q[1])} [{_fmt(q[0])}, {_fmt(q[2])}]"

                smd = _smd_cont(r[f"{v}__mean1"], r[f"{v}__sd1"], r[f"{v}__mean0"], r[f"{v}__sd0"])
                rows.append(
                    (
                        v,
                        None,
                        "continuous",
                        cell("all"),
                        cell(0),
                        cell(1),
                        smd,
                        int(r[f"{v}__n0"]),
                        int(r[f"{v}__n1"]),
                        missing,
                        0,
                    )
                )
    if categorical:
        counts = df.select(
            *[
                F.struct(F.lit(v).alias("variable"), F.col(v).cast("string").alias("level")).alias(v)
                for v in categorical
            ],
            label,
        )
        long = counts.select(F.explode(F.array(*categorical)).alias("c"), label).select("c.variable", "c.level", label)
        agg = long.groupBy("variable", "level").agg(
            F.count(F.when(F.col(label) == 0, 1)).alias("c0"), F.count(F.when(F.col(label) == 1, 1)).alias("c1")
        )
        levels: dict[str, list[tuple[str | None, int, int]]] = {}
        for row in agg.collect():  # one row per level: small by construction
            levels.setdefault(row.variable, []).append((row.level, int(row.c0), int(row.c1)))
        for v in categorical:
            lv = sorted(levels.get(v, []), key=lambda t: (-(t[1] + t[2]), str(t[0])))
            missing = sum(c0 + c1 for lev, c0, c1 in lv if lev is None)
            for lev, c0, c1 in [t for t in lv if t[0] is not None][:MAX_LEVELS]:
                p0, p1, pa = c0 / max(n0, 1), c1 / max(n1, 1), (c0 + c1) / max(n, 1)
                cells = [f"{c} ({100 * p:.1f}%)" for c, p in ((c0 + c1, pa), (c0, p0), (c1, p1))]
                rows.append((v, lev, "categorical", *cells, _smd_prop(p1, p0), n0, n1, missing, 0))
    order = {v: i for i, v in enumerate(variables)}
    rows.sort(key=lambda t: -1 if t[0] == "n" else order[t[0]])
    rows = [(*t[:-1], i) for i, t in enumerate(rows)]
    return spark.createDataFrame(rows, SCHEMA)


def to_markdown(rows: list[Any]) -> str:
    """The table as Markdown (one line per row), for a paper's draft."""
    head = "| Variable | Overall | Outcome = 0 | Outcome = 1 | SMD |\n|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        name = r.variable if r.level is None else f"{r.variable}: {r.level}"
        smd = "" if r.smd is None else f"{r.smd:.3f}"
        lines.append(f"| {name} | {r.overall} | {r.outcome_0} | {r.outcome_1} | {smd} |")
    return "\n".join(lines) + "\n"
