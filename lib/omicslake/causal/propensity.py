"""Propensity scores and what is built on them, on Spark DataFrames (one row per person).

- ``separation``: covariates whose values alone split treated from comparator (the PS model would
  give 0 / 1 and any adjusted estimate would be a silent artefact): checked before fitting.
- ``fit_ps``: a ridge-regularised MLlib logistic regression of the treatment (0/1) on the
  covariates; adds ``ps``, ``logit_ps`` and the ``preference`` score of Walker et al. (2013):
  logit(preference) = logit(ps) - logit(share treated).
- ``trim``: by PS bounds or by equipoise (preference in [lower, upper]).
- ``ps_strata``: stratum 1..n by PS quantiles of the whole population; ``stratum_weights``: the
  marginal mean weights that measure the balance within those strata.
- ``iptw``: inverse probability of treatment weights for the ATE or the ATT, optionally stabilised
  and truncated at a maximum weight.
- ``match``: 1:k nearest-neighbour matching on the logit PS within a caliper (in SDs of the logit
  PS), without replacement, distributed: the logit-PS axis is cut into cells, each cell matched on an
  executor by the sequential greedy algorithm (``greedy_pairs``, as CohortMethod matches on one
  machine), in rounds that alternate the grid with one shifted by half a cell so that pairs across a
  cell edge are made too; no patient rows reach the driver.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from omicslake.frames import approx_quantiles

log = logging.getLogger(__name__)

EPS = 1e-12


def separation(df: DataFrame, treatment: str, covariates: Sequence[str]) -> list[str]:
    """The covariates whose ranges among treated (treatment = 1) and comparator (0) persons do not
    overlap, i.e. that predict treatment perfectly on their own (nulls ignored)."""
    aggs = []
    for j, c in enumerate(covariates):
        x = F.col(c).cast("double")
        t = F.col(treatment) == 1
        aggs += [
            F.min(F.when(t, x)).alias(f"tmin{j}"),
            F.max(F.when(t, x)).alias(f"tmax{j}"),
            F.min(F.when(~t, x)).alias(f"cmin{j}"),
            F.max(F.when(~t, x)).alias(f"cmax{j}"),
        ]
    row = df.agg(*aggs).first()
    assert row is not None
    out = []
    for j, c in enumerate(covariates):
        tmin, tmax, cmin, cmax = (row[f"{k}{j}"] for k in ("tmin", "tmax", "cmin", "cmax"))
        if None in (tmin, tmax, cmin, cmax):
            continue
        if tmin > cmax or cmin > tmax:
            out.append(c)
    return out


def fit_ps(
    df: DataFrame,
    treatment: str,
    covariates: Sequence[str],
    reg: float = 0.01,
    max_iter: int = 100,
) -> tuple[DataFrame, dict[str, float]]:
    """Fit the PS model (MLlib LogisticRegression, L2 penalty ``reg``, standardised covariates) of
    ``treatment`` (0/1) on ``covariates`` (numeric, no nulls) and return (df with ``ps``,
    ``logit_ps`` and ``preference`` added, the fitted coefficients by covariate plus
    'intercept'). ValueError when an arm is empty, a covariate separates the arms, or the covariates
    together do (the fitted linear predictor's ranges in the two arms do not overlap)."""
    counts = {
        int(r[0]): int(r[1]) for r in df.groupBy(F.col(treatment).cast("int")).count().collect() if r[0] is not None
    }
    if counts.get(1, 0) == 0 or counts.get(0, 0) == 0:
        raise ValueError(
            f"propensity model: an arm is empty (treated {counts.get(1, 0)}, comparator {counts.get(0, 0)})"
        )
    sep = separation(df, treatment, covariates)
    if sep:
        raise ValueError(
            f"propensity model: covariates {sep} predict treatment perfectly (their ranges in the two arms do not overlap); "
            "drop them from the covariates or restrict the cohort"
        )
    share = counts[1] / (counts[0] + counts[1])
    assembler = VectorAssembler(inputCols=list(covariates), outputCol="_ps_features", handleInvalid="error")
    lr = LogisticRegression(
        featuresCol="_ps_features",
        labelCol="_ps_label",
        probabilityCol="_ps_prob",
        rawPredictionCol="_ps_raw",
        predictionCol="_ps_pred",
        regParam=reg,
        elasticNetParam=0.0,
        standardization=True,
        maxIter=max_iter,
        tol=1e-8,
    )
    data = assembler.transform(df.withColumn("_ps_label", F.col(treatment).cast("double")))
    model = lr.fit(data)
    logit_share = math.log(share / (1 - share))
    ps = F.least(F.greatest(vector_to_array("_ps_prob").getItem(1), F.lit(EPS)), F.lit(1 - EPS))
    out = (
        model.transform(data)
        .withColumn("ps", ps)
        .withColumn("logit_ps", F.log(F.col("ps") / (1 - F.col("ps"))))
        .withColumn("preference", 1 / (1 + F.exp(-(F.col("logit_ps") - logit_share))))
        .drop("_ps_features", "_ps_label", "_ps_prob", "_ps_raw", "_ps_pred")
    )
    coefs = {c: float(b) for c, b in zip(covariates, model.coefficients.toArray(), strict=True)}
    coefs["intercept"] = float(model.intercept)
    # covariates that separate the arms together (no one of them alone: checked above) give a fitted
    # linear predictor whose ranges in the two arms do not overlap: every PS weight and match would
    # rest on extrapolation, so this is an error, not a number
    lp = sum((F.col(c).cast("double") * b for c, b in coefs.items() if c != "intercept"), F.lit(0.0))
    t = F.col(treatment) == 1
    r = df.agg(
        F.min(F.when(t, lp)).alias("tmin"),
        F.max(F.when(t, lp)).alias("tmax"),
        F.min(F.when(~t, lp)).alias("cmin"),
        F.max(F.when(~t, lp)).alias("cmax"),
    ).first()
    assert r is not None
    if r["tmin"] > r["cmax"] or r["cmin"] > r["tmax"]:
        top = sorted(covariates, key=lambda c: -abs(coefs[c]))[:3]
        raise ValueError(
            f"propensity model: covariates {list(covariates)} jointly predict treatment perfectly (the fitted "
            f"scores of the two arms do not overlap; largest coefficients: {top}); drop or merge the covariates "
            "that define the arms, or restrict the cohort"
        )
    return out, coefs


def trim(df: DataFrame, lower: float, upper: float, by: str = "ps") -> DataFrame:
    """Keep the rows with ``by`` ('ps', or 'preference' for equipoise) within [lower, upper]."""
    if by not in ("ps", "preference"):
        raise ValueError(f"trim by 'ps' or 'preference', not {by!r}")
    return df.where(F.col(by).between(lower, upper))


def ps_strata(df: DataFrame, n: int = 5, relative_error: float = 1e-4) -> DataFrame:
    """Add ``ps_stratum`` 1..n: the PS quantile band of each row (cut points from the whole
    population by approxQuantile)."""
    cuts = approx_quantiles(df, ["ps"], [i / n for i in range(1, n)], relative_error)[0]
    expr = F.lit(1)
    for c in cuts:
        expr = expr + (F.col("ps") > c).cast("int")
    return df.withColumn("ps_stratum", expr)


def stratum_weights(df: DataFrame, treatment: str, stratum: str = "ps_stratum") -> DataFrame:
    """Add ``stratum_weight``, the marginal mean weight of PS stratification (Hong 2010): n_s x
    P(arm) / n_(s, arm) for a person of stratum s in an arm; weighted means of the two arms then
    compare like with like within strata (the balance a stratified analysis achieves)."""
    arm = F.col(treatment).cast("int")
    n_sa = F.count(F.lit(1)).over(Window.partitionBy(stratum, arm))
    n_s = F.count(F.lit(1)).over(Window.partitionBy(stratum))
    n_a = F.count(F.lit(1)).over(Window.partitionBy(arm))
    total = df.count()
    return df.withColumn("stratum_weight", n_s * (n_a / F.lit(float(total))) / n_sa)


def iptw(
    df: DataFrame,
    treatment: str,
    estimand: str = "ate",
    stabilized: bool = True,
    max_weight: float | None = None,
) -> DataFrame:
    """Add ``weight``: for the ATE 1/ps (treated) and 1/(1-ps) (comparator), stabilised by the
    share treated P (P/ps, (1-P)/(1-ps)); for the ATT 1 (treated) and ps/(1-ps) (comparator),
    stabilised by rescaling the comparator weights to sum to the comparator count. Weights above
    ``max_weight`` are set to it (truncation)."""
    if estimand not in ("ate", "att"):
        raise ValueError(f"IPTW estimand must be 'ate' or 'att', not {estimand!r}")
    t = F.col(treatment) == 1
    ps = F.col("ps")
    row = df.agg(
        F.avg(t.cast("double")).alias("share"),
        F.count(F.when(~t, 1)).alias("n_c"),
        F.sum(F.when(~t, ps / (1 - ps))).alias("sum_att"),
    ).first()
    assert row is not None
    share = float(row["share"])
    if estimand == "ate":
        w = F.when(t, (share if stabilized else 1.0) / ps).otherwise((1 - share if stabilized else 1.0) / (1 - ps))
    else:
        scale = float(row["n_c"]) / float(row["sum_att"]) if stabilized and row["sum_att"] else 1.0
        w = F.when(t, F.lit(1.0)).otherwise(ps / (1 - ps) * scale)
    if max_weight is not None:
        w = F.least(w, F.lit(float(max_weight)))
    return df.withColumn("weight", w)


def greedy_pairs(
    t_id: Sequence[str],
    t_l: Sequence[float],
    t_need: Sequence[int],
    c_id: Sequence[str],
    c_l: Sequence[float],
    width: float,
) -> tuple[list[str], list[str], list[float]]:
    """Sequential greedy nearest-neighbour matching without replacement, on one machine: in sweeps
    (one per comparator a treated person still needs), each treated person in order of logit PS
    (then id) takes the nearest free comparator within ``width`` (the lower one on a tie). Returns
    (treated ids, comparator ids, distances) of the pairs made. Free comparators are a sorted array
    whose taken entries are skipped by path-compressed "next free" links, so each pick is a binary
    search plus amortised constant work."""
    import numpy as np

    c_order = np.lexsort((np.asarray(c_id, dtype=object), np.asarray(c_l, dtype=float)))
    cl = np.asarray(c_l, dtype=float)[c_order]
    cid = [c_id[i] for i in c_order]
    n = len(cl)
    right = list(range(n + 1))  # right[i]: the first free index >= i (n: none)
    left = list(range(-1, n))  # left[i + 1]: the last free index <= i (-1: none)

    def find(links: list[int], i: int, shift: int) -> int:
        root = i
        while links[root + shift] != root:
            root = links[root + shift]
        while links[i + shift] != root:  # path compression
            links[i + shift], i = root, links[i + shift]
        return root

    t_order = np.lexsort((np.asarray(t_id, dtype=object), np.asarray(t_l, dtype=float)))
    need = np.asarray(t_need, dtype=np.int64)
    out_t: list[str] = []
    out_c: list[str] = []
    out_d: list[float] = []
    for _ in range(int(need.max(initial=0))):
        made = 0
        for i in t_order:
            if need[i] <= 0:
                continue
            x = float(t_l[i])
            k = int(np.searchsorted(cl, x, side="left"))  # cl[k - 1] < x <= cl[k]
            lo = find(left, k - 1, 1) if k > 0 else -1
            hi = find(right, k, 0) if k < n else n
            dp = x - cl[lo] if lo >= 0 else math.inf
            dn = cl[hi] - x if hi < n else math.inf
            j, d = (lo, dp) if dp <= dn else (hi, dn)
            if d > width:
                continue
            out_t.append(t_id[i])
            out_c.append(cid[j])
            out_d.append(float(d))
            need[i] -= 1
            made += 1
            right[j] = j + 1  # j taken: links skip it
            left[j + 1] = j - 1
        if made == 0:
            break
    return out_t, out_c, out_d


def match(
    df: DataFrame,
    treatment: str,
    id_col: str,
    ratio: int = 1,
    caliper: float = 0.2,
    max_rounds: int = 8,
    cell_persons: int = 100_000,
    cell: float | None = None,
) -> DataFrame:
    """1:``ratio`` matching without replacement on ``logit_ps`` within ``caliper`` SDs of the logit
    PS. Returns the matched rows of df with ``match_set`` (the id of the treated person of the set,
    as a string) and ``match_distance``; treated persons without a comparator within the caliper are
    dropped.

    Distributed without collecting persons: the logit-PS axis is cut into cells of equal width (at
    least four calipers, about ``cell_persons`` persons each on average; or ``cell`` wide, at least
    four calipers), and in each cell, on an executor, ``greedy_pairs`` matches sequentially as CohortMethod does on one machine. Two persons
    within a caliper of each other lie in one cell of the grid or of the grid shifted by half a cell,
    so rounds alternate the two grids, each matching the treated persons still in need to the
    comparators still free, until a round makes no pair (at most ``max_rounds``). Only persons near
    a cell edge can end up with another partner than one sequential pass over everybody gives."""
    from pyspark.sql import types as T

    t = F.col(treatment) == 1
    base = df.select(
        F.col(id_col).cast("string").alias("_id"), F.col("logit_ps").alias("_l"), t.alias("_t")
    ).localCheckpoint()
    stats = base.agg(F.stddev("_l"), F.min("_l"), F.max("_l"), F.count(F.lit(1))).first()
    assert stats is not None
    width = caliper * float(stats[0] or 0.0)  # the caliper is in SDs of the logit PS
    if width <= 0:
        raise ValueError("matching: the logit PS has no spread (every person has the same propensity)")
    lo, hi, n = float(stats[1]), float(stats[2]), int(stats[3])
    cell = max(4 * width, cell or (hi - lo) / max(1, math.ceil(n / cell_persons)))
    treated = base.where("_t").select("_id", "_l", F.lit(ratio).alias("_need"))
    free = base.where("NOT _t").select("_id", "_l")
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in ("_tid", "_cid")] + [T.StructField("_dist", T.DoubleType())]
    )

    def pairs_in_cell(pdf):  # type: ignore[no-untyped-def]
        import pandas as pd

        tr, co = pdf[pdf["_is_t"] == 1], pdf[pdf["_is_t"] == 0]
        got = greedy_pairs(
            tr["_id"].tolist(), tr["_l"].tolist(), tr["_need"].tolist(), co["_id"].tolist(), co["_l"].tolist(), width
        )
        return pd.DataFrame(
            {
                "_tid": pd.Series(got[0], dtype=object),
                "_cid": pd.Series(got[1], dtype=object),
                "_dist": pd.Series(got[2], dtype="float64"),
            }
        )

    pairs: DataFrame | None = None
    rounds = 0
    for rnd in range(max_rounds):
        shift = cell / 2 if rnd % 2 else 0.0
        in_cell = F.floor((F.col("_l") - F.lit(lo - shift)) / F.lit(cell)).alias("_cell")
        both = (
            treated.where("_need > 0")
            .select("_id", "_l", "_need", F.lit(1).alias("_is_t"), in_cell)
            .unionByName(free.select("_id", "_l", F.lit(0).alias("_need"), F.lit(0).alias("_is_t"), in_cell))
        )
        accepted = both.groupBy("_cell").applyInPandas(pairs_in_cell, schema).localCheckpoint()
        n_new = accepted.count()
        rounds = rnd + 1
        log.info("matching round %d (grid shifted by %.3g): %d pairs", rounds, shift, n_new)
        if n_new == 0:
            if rnd > 0:  # the other grid's round made its cells maximal and nothing changed since
                break
            continue
        pairs = accepted if pairs is None else pairs.unionByName(accepted)
        free = free.join(accepted.select(F.col("_cid").alias("_id")), "_id", "left_anti")
        # a union and a sum, not a left join: Spark estimates a join's size as the product of its
        # sides' and a checkpoint keeps its plan's estimate, so joined round after round the estimate's
        # digits would double every round (the planner then spends minutes in BigInteger products)
        took = accepted.groupBy(F.col("_tid").alias("_id")).agg((-F.count(F.lit(1))).cast("int").alias("_need"))
        treated = (
            treated.unionByName(took.select("_id", F.lit(None).cast("double").alias("_l"), "_need"))
            .groupBy("_id")
            .agg(F.max("_l").alias("_l"), F.sum("_need").cast("int").alias("_need"))
            .localCheckpoint()
        )
        free = free.localCheckpoint()
    else:
        log.warning("matching stopped after max_rounds=%d rounds with pairs still being made", max_rounds)
    log.info("matching: %d rounds", rounds)
    if pairs is None:
        return df.sparkSession.createDataFrame([], df.schema.add("match_set", "string").add("match_distance", "double"))
    members = pairs.select(
        F.col("_tid").alias("_mid"), F.col("_tid").alias("match_set"), F.lit(0.0).alias("match_distance")
    ).distinct()
    members = members.unionByName(
        pairs.select(
            F.col("_cid").alias("_mid"), F.col("_tid").alias("match_set"), F.col("_dist").alias("match_distance")
        )
    )
    return df.join(members, F.col(id_col).cast("string") == F.col("_mid")).drop("_mid")
