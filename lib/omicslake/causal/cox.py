"""Cox proportional-hazards models fitted on Spark DataFrames (no patient rows reach the driver).

The partial likelihood is maximised by Newton-Raphson with step halving (as R's ``coxph``). The
modelling frame is hash-partitioned by stratum and cached once; each iteration is then one Spark
stage without a shuffle (``fit``; ``derivatives(by_stratum=False)`` is the two-shuffle form below,
for any frame). When the rows fall into few distinct (stratum, time, event, covariates) groups
(binary covariates: treatment, interactions, small matched sets) and no cluster is given, ``fit``
collects those groups' sums once (the sufficient statistics, exact: count, weight and squared
weight per group; no ids) and runs the checks, the Newton steps and the robust variance on the
driver from the same functions instead (one Spark job per fit). The Spark form:

1. the executors aggregate, per (stratum, distinct time), the risk sums of the rows leaving at that
   time: ``S0 = sum w exp(eta)``, ``S1 = sum w exp(eta) x``, ``S2 = sum w exp(eta) x x'`` and the
   same sums over the events only (for Efron), the number of events, their weight and weighted
   covariate sums (Spark SQL aggregates, one scalar column per element);
2. those per-time aggregates are hash-partitioned by stratum and each partition (pandas, via
   ``mapInPandas``) sorts its strata by descending time, takes cumulative sums (the risk sets) and
   adds up its log-likelihood, score and information; the driver collects one row per partition.

So the driver holds p + p^2 numbers per partition, never a patient; many small strata (matched
sets) spread over the partitions, one big stratum is reduced to its distinct times first.

Ties: ``breslow`` or ``efron`` (R's weighted Efron: tied deaths share their mean weight). Case
weights multiply each row's contribution; the model-based variance is the inverse information.
``robust=True`` adds the sandwich variance ``I^-1 (sum_c U_c U_c') I^-1`` from the weighted score
residuals ``U`` summed per cluster (per row without a cluster column), as R's
``coxph(..., robust=TRUE)`` / lifelines' ``robust=True``. Covariates are centred on their weighted
means first (the partial likelihood does not change; exp() does not overflow).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy import stats

log = logging.getLogger(__name__)

TIES = ("breslow", "efron")
LOCAL_MAX_GROUPS = 200_000  # sufficient-statistic groups fitted on the driver (see fit)
RUNAWAY = 10.0  # |log HR| beyond which a coefficient is taken as infinite (HR > 22,000: separation)


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model: coefficients (log hazard ratios) in the order of ``covariates``, the
    model-based variance (inverse information), the robust variance when asked for, the partial
    log-likelihood at the estimate and at beta = 0, counts and convergence."""

    covariates: tuple[str, ...]
    coef: np.ndarray
    var: np.ndarray
    robust_var: np.ndarray | None
    loglik: float
    loglik0: float
    n: int
    events: int
    iterations: int
    converged: bool
    ties: str
    diagnostics: tuple[str, ...] = field(default=())

    @property
    def se(self) -> np.ndarray:
        """Model-based standard errors."""
        return np.sqrt(np.diag(self.var))

    @property
    def robust_se(self) -> np.ndarray | None:
        """Sandwich standard errors (None unless fitted with robust=True)."""
        return None if self.robust_var is None else np.sqrt(np.diag(self.robust_var))

    @property
    def used_se(self) -> np.ndarray:
        """The robust standard errors when present, else the model-based ones."""
        r = self.robust_se
        return self.se if r is None else r

    def summary(self, level: float = 0.95) -> list[dict[str, float | str]]:
        """One dict per covariate: coef, se (robust when fitted so), hr and its CI, z, p."""
        z = stats.norm.ppf(0.5 + level / 2)
        se = self.used_se
        rows: list[dict[str, float | str]] = []
        for j, name in enumerate(self.covariates):
            b, s = float(self.coef[j]), float(se[j])
            zz = b / s if s > 0 else float("nan")
            rows.append(
                {
                    "term": name,
                    "coef": b,
                    "se": s,
                    "hr": float(np.exp(b)),
                    "hr_lower": float(np.exp(b - z * s)),
                    "hr_upper": float(np.exp(b + z * s)),
                    "z": zz,
                    "p": float(2 * stats.norm.sf(abs(zz))),
                }
            )
        return rows


def _pairs(p: int) -> list[tuple[int, int]]:
    return [(j, k) for j in range(p) for k in range(j, p)]


def _sym(flat: np.ndarray, p: int) -> np.ndarray:
    """(..., p(p+1)/2) upper-triangle values -> (..., p, p) symmetric matrices."""
    out = np.zeros((*flat.shape[:-1], p, p))
    for i, (j, k) in enumerate(_pairs(p)):
        out[..., j, k] = flat[..., i]
        out[..., k, j] = flat[..., i]
    return out


def _raw(
    df: DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    weight: str | None,
    strata: Sequence[str],
    cluster: str | None,
) -> DataFrame:
    """The model's columns under fixed names (_t, _d, _w, _s, _c, _x0..), covariates not centred;
    ValueError naming a missing column."""
    names = [time, event, *covariates, *strata, *([weight] if weight else []), *([cluster] if cluster else [])]
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValueError(f"Cox model: columns {missing} are not in the data (has {sorted(df.columns)})")
    if not covariates:
        raise ValueError("Cox model: no covariates")
    s_key: Column = (
        F.concat_ws("\u001f", *[F.coalesce(F.col(s).cast("string"), F.lit("\u0000")) for s in strata])
        if strata
        else F.lit("")
    )
    sel = [
        F.col(time).cast("double").alias("_t"),
        F.col(event).cast("double").alias("_d"),
        (F.col(weight).cast("double") if weight else F.lit(1.0)).alias("_w"),
        s_key.alias("_s"),
        *([F.col(cluster).cast("string").alias("_c")] if cluster else []),
        *[F.col(c).cast("double").alias(f"_x{j}") for j, c in enumerate(covariates)],
    ]
    return df.select(*sel)


def prepare(
    df: DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    weight: str | None = None,
    strata: Sequence[str] = (),
    cluster: str | None = None,
) -> tuple[DataFrame, np.ndarray, int, int]:
    """The modelling frame of ``fit``: columns _t (time), _d (event 0/1), _w (weight), _s (stratum
    key), optional _c (cluster) and _x0.._x{p-1} (covariates centred on their weighted means).
    Returns (frame, means, rows, events). ValueError naming the column when a column is missing,
    a value is null, a time or weight is negative, or an event is not 0/1."""
    framed, means, n, events, _ = _prepare(df, time, event, covariates, weight, strata, cluster)
    return framed, means, n, events


def _prepare(
    df: DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    weight: str | None,
    strata: Sequence[str],
    cluster: str | None,
) -> tuple[DataFrame, np.ndarray, int, int, dict[str, Any]]:
    """``prepare`` and its counts (``_checked``'s keys and sd<j>, the covariates' sample SDs)."""
    raw = _raw(df, time, event, covariates, weight, strata, cluster)
    p = len(covariates)
    checks = raw.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("_d").alias("events"),
        F.sum("_w").alias("sw"),
        F.sum(F.when(F.col("_t").isNull() | (F.col("_t") < 0), 1).otherwise(0)).alias("bad_t"),
        F.sum(F.when(~F.col("_d").isin(0.0, 1.0) | F.col("_d").isNull(), 1).otherwise(0)).alias("bad_d"),
        F.sum(F.when(F.col("_w").isNull() | (F.col("_w") < 0), 1).otherwise(0)).alias("bad_w"),
        *[F.sum(F.col(f"_x{j}").isNull().cast("int")).alias(f"null{j}") for j in range(p)],
        *[F.sum(F.col("_w") * F.col(f"_x{j}")).alias(f"m{j}") for j in range(p)],
        *[F.stddev_samp(F.col(f"_x{j}")).alias(f"sd{j}") for j in range(p)],
    ).first()
    assert checks is not None
    means, n, events = _checked(checks.asDict(), time, event, covariates, weight)
    framed = raw.select(
        "_t",
        "_d",
        "_w",
        "_s",
        *(["_c"] if cluster else []),
        *[(F.col(f"_x{j}") - float(means[j])).alias(f"_x{j}") for j in range(p)],
    )
    return framed, means, n, events, checks.asDict()


def _checked(
    checks: dict[str, Any], time: str, event: str, covariates: Sequence[str], weight: str | None
) -> tuple[np.ndarray, int, int]:
    """(weighted means, rows, events) from the counts of ``prepare`` (n, events, sw, bad_t, bad_d,
    bad_w, null<j>, m<j>); ValueError naming the column for a bad value."""
    p = len(covariates)
    n = int(checks["n"])
    if n == 0:
        raise ValueError("Cox model: the data has no rows")
    for key, what in (
        ("bad_t", f"{time} null or negative"),
        ("bad_d", f"{event} not 0/1"),
        ("bad_w", f"{weight} null or negative"),
    ):
        if checks[key]:
            raise ValueError(f"Cox model: {checks[key]} rows with {what}")
    nulls = [covariates[j] for j in range(p) if checks[f"null{j}"]]
    if nulls:
        raise ValueError(f"Cox model: covariates {nulls} have null values; impute or drop them first")
    sw = float(checks["sw"])
    means = np.array([float(checks[f"m{j}"]) / sw for j in range(p)])
    return means, n, int(checks["events"] or 0)


def _penalty(checks: dict[str, Any], p: int, n: int, l2: float, penalizer: float) -> np.ndarray:
    """The diagonal of the ridge penalty matrix: ``l2`` on every coefficient plus lifelines'
    ``penalizer`` (``n * penalizer / 2 * sum (sd_j beta_j)^2``: lifelines fits on covariates divided
    by their sample standard deviation ``sd_j`` and penalises those coefficients); ValueError for a
    negative penalty."""
    if l2 < 0 or penalizer < 0:
        raise ValueError(f"Cox model: penalties must be >= 0 (l2={l2}, penalizer={penalizer})")
    pen = np.full(p, float(l2))
    if penalizer > 0:
        sd = np.array([float(checks[f"sd{j}"] or 0.0) for j in range(p)])
        pen = pen + penalizer * n * sd**2
    return pen


def _compress_raw(raw: DataFrame, p: int, max_groups: int) -> pd.DataFrame | None:
    """The sufficient statistics of a frame from ``_raw`` (covariates not centred): one row per
    distinct (_s, _t, _d, _x...) with the summed weight ``_w``, summed squared weight ``_w2`` (the
    robust variance), the row count ``_n`` and the count of bad weights ``_bad_w``; on the driver when
    there are at most ``max_groups`` of them (rows alike in all of these contribute alike to the
    likelihood, its derivatives and the score residuals at any beta: exact), else None."""
    xs = [f"_x{j}" for j in range(p)]
    w = F.col("_w")
    grouped = raw.groupBy("_s", "_t", "_d", *xs).agg(
        F.sum(w).alias("_w"),
        F.sum(w * w).alias("_w2"),
        F.count(F.lit(1)).alias("_n"),
        F.sum(F.when(w.isNull() | (w < 0), 1).otherwise(0)).alias("_bad_w"),
    )
    pdf = grouped.limit(max_groups + 1).toPandas()
    return pdf if len(pdf) <= max_groups else None


def _local_checks(pdf: pd.DataFrame, p: int) -> dict[str, Any]:
    """``prepare``'s counts from a compressed frame (``_compress_raw``)."""
    n = pdf["_n"].to_numpy(dtype=float)
    t, d = pdf["_t"].to_numpy(dtype=float), pdf["_d"].to_numpy(dtype=float)
    w = pdf["_w"].to_numpy(dtype=float)
    out: dict[str, Any] = {
        "n": int(n.sum()),
        "events": float(np.nansum(n * d)),
        "sw": float(np.nansum(w)),
        "bad_t": int(n[np.isnan(t) | (t < 0)].sum()),
        "bad_d": int(n[np.isnan(d) | ~np.isin(d, (0.0, 1.0))].sum()),
        "bad_w": int(pdf["_bad_w"].sum()),
    }
    for j in range(p):
        x = pdf[f"_x{j}"].to_numpy(dtype=float)
        out[f"null{j}"] = int(n[np.isnan(x)].sum())
        out[f"m{j}"] = float(np.nansum(w * x))
        # unweighted sample standard deviation over the rows (the groups counted _n times)
        ok = ~np.isnan(x)
        k = float(n[ok].sum())
        mean = float(np.sum(n[ok] * x[ok]) / k) if k else 0.0
        out[f"sd{j}"] = float(np.sqrt(np.sum(n[ok] * (x[ok] - mean) ** 2) / (k - 1))) if k > 1 else None
    return out


def _driver_meat(pdf: pd.DataFrame, beta: np.ndarray, efron: bool) -> np.ndarray:
    """``robust_meat`` (per row, no cluster) of a compressed frame: the score residual ``U`` is
    the same for every row of a group, so the group adds ``sum w^2`` times ``U U'`` (as
    ``score_residuals`` on the rows)."""
    p = len(beta)
    haz = next(_partition_hazards(p, efron, iter([_local_aggregates(pdf, beta, efron)])))
    m = pdf.merge(haz, on=["_s", "_t"], how="left")
    x = m[[f"_x{j}" for j in range(p)]].to_numpy(dtype=float)
    d = m["_d"].to_numpy(dtype=float)
    ev = d > 0
    eta = x @ beta
    h_at = np.where(ev, m["h_ev"].to_numpy(), m["h_full"].to_numpy())
    u = np.empty_like(x)
    for j in range(p):
        ha_at = np.where(ev, m[f"ha_ev_{j}"].to_numpy(), m[f"ha_full_{j}"].to_numpy())
        u[:, j] = d * (x[:, j] - m[f"abar_{j}"].to_numpy()) - np.exp(eta) * (
            x[:, j] * (m["hc"].to_numpy() + h_at) - (m[f"hac_{j}"].to_numpy() + ha_at)
        )
    w2 = m["_w2"].to_numpy(dtype=float)
    return np.asarray(np.einsum("k,ki,kj->ij", w2, u, u))


def _eta(beta: np.ndarray) -> Column:
    return sum((F.col(f"_x{j}") * float(b) for j, b in enumerate(beta)), F.lit(0.0))


def time_aggregates(frame: DataFrame, beta: np.ndarray, efron: bool) -> DataFrame:
    """Per (stratum _s, time _t): s0, s1_j, s2_j_k (risk sums of the rows leaving at _t, weighted by
    w exp(eta)), d (events), dw (their weight), dweta, xw_j (weighted sums over the events) and,
    for Efron, e0, e1_j, e2_j_k (the risk sums over the events only)."""
    p = len(beta)
    x = [F.col(f"_x{j}") for j in range(p)]
    d, w, r, eta = F.col("_d"), F.col("_w"), F.col("_r"), F.col("_eta")
    aggs = [
        F.sum(r).alias("s0"),
        *[F.sum(r * x[j]).alias(f"s1_{j}") for j in range(p)],
        *[F.sum(r * x[j] * x[k]).alias(f"s2_{j}_{k}") for j, k in _pairs(p)],
        F.sum(d).alias("d"),
        F.sum(w * d).alias("dw"),
        F.sum(w * d * eta).alias("dweta"),
        *[F.sum(w * d * x[j]).alias(f"xw_{j}") for j in range(p)],
    ]
    if efron:
        aggs += [
            F.sum(r * d).alias("e0"),
            *[F.sum(r * d * x[j]).alias(f"e1_{j}") for j in range(p)],
            *[F.sum(r * d * x[j] * x[k]).alias(f"e2_{j}_{k}") for j, k in _pairs(p)],
        ]
    return (
        frame.withColumn("_eta", _eta(beta))
        .withColumn("_r", F.col("_w") * F.exp(F.col("_eta")))
        .groupBy("_s", "_t")
        .agg(*aggs)
    )


@dataclass
class _Times:
    """The event times of one partition with their risk sets (numpy)."""

    s: np.ndarray  # stratum keys
    t: np.ndarray
    d: np.ndarray  # number of events
    dw: np.ndarray
    dweta: np.ndarray
    xw: np.ndarray  # (m, p)
    r0: np.ndarray
    r1: np.ndarray
    r2: np.ndarray  # (m, p, p)
    e0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray


def _risk_sets(pdf: pd.DataFrame, p: int, efron: bool, events_only: bool = True) -> _Times:
    pdf = pdf.sort_values(["_s", "_t"], ascending=[True, False], kind="mergesort").reset_index(drop=True)
    s_cols = ["s0", *[f"s1_{j}" for j in range(p)], *[f"s2_{j}_{k}" for j, k in _pairs(p)]]
    cum = pdf.groupby("_s", sort=False)[s_cols].cumsum().to_numpy()
    keep = (pdf["d"].to_numpy() > 0) if events_only else np.ones(len(pdf), dtype=bool)
    pdf, cum = pdf[keep], cum[keep]
    m = len(pdf)
    r0, r1, r2 = cum[:, 0], cum[:, 1 : 1 + p], _sym(cum[:, 1 + p :], p)
    if efron:
        e0 = pdf["e0"].to_numpy()
        e1 = pdf[[f"e1_{j}" for j in range(p)]].to_numpy()
        e2 = _sym(pdf[[f"e2_{j}_{k}" for j, k in _pairs(p)]].to_numpy(), p)
    else:
        e0, e1, e2 = np.zeros(m), np.zeros((m, p)), np.zeros((m, p, p))
    return _Times(
        s=pdf["_s"].to_numpy(),
        t=pdf["_t"].to_numpy(),
        d=np.rint(pdf["d"].to_numpy()).astype(np.int64),
        dw=pdf["dw"].to_numpy(),
        dweta=pdf["dweta"].to_numpy(),
        xw=pdf[[f"xw_{j}" for j in range(p)]].to_numpy(),
        r0=r0,
        r1=r1,
        r2=r2,
        e0=e0,
        e1=e1,
        e2=e2,
    )


def _terms(tm: _Times, efron: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand each event time into its Efron terms (one per tied event; a single term for Breslow):
    (row index, fraction l/d, weight of the term)."""
    if efron:
        reps = np.maximum(tm.d, 0)
        idx = np.repeat(np.arange(len(reps)), reps)
        starts = np.repeat(np.cumsum(reps) - reps, reps)
        frac = (np.arange(len(idx)) - starts) / reps[idx]
        wt = (tm.dw / np.maximum(reps, 1))[idx]
    else:
        idx = np.flatnonzero(tm.d > 0)
        frac = np.zeros(len(idx))
        wt = tm.dw[idx]
    return idx, frac, wt


def _partition_derivs(p: int, efron: bool, pdfs: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    frames = list(pdfs)
    if not frames:
        return
    tm = _risk_sets(pd.concat(frames, ignore_index=True), p, efron)
    idx, frac, wt = _terms(tm, efron)
    ll = float(tm.dweta.sum())
    g = tm.xw.sum(axis=0)
    h = np.zeros((p, p))
    chunk = max(1, 2_000_000 // max(p * p, 1))
    for a0 in range(0, len(idx), chunk):
        i, f, w = idx[a0 : a0 + chunk], frac[a0 : a0 + chunk], wt[a0 : a0 + chunk]
        denom = tm.r0[i] - f * tm.e0[i]
        a = (tm.r1[i] - f[:, None] * tm.e1[i]) / denom[:, None]
        ll -= float((w * np.log(denom)).sum())
        g = g - (w[:, None] * a).sum(axis=0)
        h += np.einsum("k,kij->ij", w / denom, tm.r2[i] - f[:, None, None] * tm.e2[i]) - np.einsum(
            "k,ki,kj->ij", w, a, a
        )
    row = {"ll": ll, **{f"g{j}": float(g[j]) for j in range(p)}}
    row.update({f"h{j}_{k}": float(h[j, k]) for j, k in _pairs(p)})
    yield pd.DataFrame([row])


def _deriv_schema(p: int) -> str:
    return ", ".join(["ll double", *[f"g{j} double" for j in range(p)], *[f"h{j}_{k} double" for j, k in _pairs(p)]])


def _local_aggregates(pdf: pd.DataFrame, beta: np.ndarray, efron: bool) -> pd.DataFrame:
    """``time_aggregates`` of the rows of one pandas batch (same columns), per (_s, _t)."""
    p = len(beta)
    x = pdf[[f"_x{j}" for j in range(p)]].to_numpy(dtype=float)
    w, d = pdf["_w"].to_numpy(dtype=float), pdf["_d"].to_numpy(dtype=float)
    # a compressed frame (``_compressed``): each row a group of _n rows alike, _w their summed weight
    n = pdf["_n"].to_numpy(dtype=float) if "_n" in pdf.columns else 1.0
    eta = x @ beta
    r = w * np.exp(eta)
    cols: dict[str, np.ndarray] = {"_s": pdf["_s"].to_numpy(), "_t": pdf["_t"].to_numpy(dtype=float), "s0": r}
    for j in range(p):
        cols[f"s1_{j}"] = r * x[:, j]
    for j, k in _pairs(p):
        cols[f"s2_{j}_{k}"] = r * x[:, j] * x[:, k]
    cols.update(d=n * d, dw=w * d, dweta=w * d * eta)
    for j in range(p):
        cols[f"xw_{j}"] = w * d * x[:, j]
    if efron:
        cols["e0"] = r * d
        for j in range(p):
            cols[f"e1_{j}"] = r * d * x[:, j]
        for j, k in _pairs(p):
            cols[f"e2_{j}_{k}"] = r * d * x[:, j] * x[:, k]
    return pd.DataFrame(cols).groupby(["_s", "_t"], sort=False, as_index=False).sum()


def _local_derivs(p: int, beta: np.ndarray, efron: bool, pdfs: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``_partition_derivs`` on the rows of a partition that holds whole strata: each batch reduced
    to its (stratum, time) sums first, so the partition's memory is its distinct times."""
    parts = [_local_aggregates(pdf, beta, efron) for pdf in pdfs if len(pdf)]
    if not parts:
        return
    agg = parts[0] if len(parts) == 1 else pd.concat(parts).groupby(["_s", "_t"], sort=False, as_index=False).sum()
    yield from _partition_derivs(p, efron, iter([agg]))


def _driver_derivatives(pdf: pd.DataFrame, beta: np.ndarray, efron: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """``derivatives`` on a compressed frame held on the driver (numpy, no Spark job)."""
    p = len(beta)
    rows = list(_local_derivs(p, np.asarray(beta, dtype=float), efron, iter([pdf])))
    if not rows:
        return 0.0, np.zeros(p), np.zeros((p, p))
    r = rows[0].iloc[0]
    h = _sym(np.array([float(r[f"h{j}_{k}"]) for j, k in _pairs(p)]), p)
    return float(r["ll"]), np.array([float(r[f"g{j}"]) for j in range(p)]), h


def derivatives(
    frame: DataFrame, beta: np.ndarray, efron: bool, partitions: int | None = None, by_stratum: bool = False
) -> tuple[float, np.ndarray, np.ndarray]:
    """Partial log-likelihood, score vector and information matrix (minus the Hessian) at beta, on
    a frame from ``prepare``; aggregated on the executors (one row per partition collected). With
    ``by_stratum`` the frame is already hash-partitioned by ``_s`` (``fit`` caches it so): each
    partition sums its rows per (stratum, time) itself, one narrow stage without a shuffle per call."""
    p = len(beta)
    parts = partitions or int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions") or "2")
    if by_stratum:
        b = np.asarray(beta, dtype=float).copy()

        def local(it: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            return _local_derivs(p, b, efron, it)

        rows = frame.mapInPandas(local, _deriv_schema(p)).collect()
    else:
        agg = time_aggregates(frame, beta, efron)

        def fn(it: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            return _partition_derivs(p, efron, it)

        rows = agg.repartition(parts, "_s").mapInPandas(fn, _deriv_schema(p)).collect()
    ll = sum(float(r["ll"]) for r in rows)
    g = np.array([sum(float(r[f"g{j}"]) for r in rows) for j in range(p)])
    h = _sym(np.array([sum(float(r[f"h{j}_{k}"]) for r in rows) for j, k in _pairs(p)]), p)
    return ll, g, h


def _partition_hazards(p: int, efron: bool, pdfs: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Per (stratum, time): the hazard increments the score residuals need (see ``score_residuals``)."""
    frames = list(pdfs)
    if not frames:
        return
    tm = _risk_sets(pd.concat(frames, ignore_index=True), p, efron, events_only=False)
    m = len(tm.t)
    h_full, h_ev = np.zeros(m), np.zeros(m)
    ha_full, ha_ev, abar = np.zeros((m, p)), np.zeros((m, p)), np.zeros((m, p))
    idx, frac, wt = _terms(tm, efron)
    if len(idx):
        denom = tm.r0[idx] - frac * tm.e0[idx]
        a = (tm.r1[idx] - frac[:, None] * tm.e1[idx]) / denom[:, None]
        haz = wt / denom
        np.add.at(h_full, idx, haz)
        np.add.at(h_ev, idx, haz * (1 - frac))
        np.add.at(ha_full, idx, haz[:, None] * a)
        np.add.at(ha_ev, idx, (haz * (1 - frac))[:, None] * a)
        counts = np.bincount(idx, minlength=m).astype(float)
        np.add.at(abar, idx, a)
        abar = abar / np.maximum(counts, 1)[:, None]
    out = pd.DataFrame({"_s": tm.s, "_t": tm.t, "h_full": h_full, "h_ev": h_ev})
    for j in range(p):
        out[f"ha_full_{j}"] = ha_full[:, j]
        out[f"ha_ev_{j}"] = ha_ev[:, j]
        out[f"abar_{j}"] = abar[:, j]
    # cumulative hazard before each time, within the stratum (ascending time)
    out = out.sort_values(["_s", "_t"], kind="mergesort").reset_index(drop=True)
    cum_cols = ["h_full", *[f"ha_full_{j}" for j in range(p)]]
    before = out.groupby("_s", sort=False)[cum_cols].cumsum() - out[cum_cols]
    out["hc"] = before["h_full"]
    for j in range(p):
        out[f"hac_{j}"] = before[f"ha_full_{j}"]
    yield out


def score_residuals(frame: DataFrame, beta: np.ndarray, efron: bool, partitions: int | None = None) -> DataFrame:
    """The frame with the weighted score residuals ``wU_0..wU_{p-1}`` of each row at beta:
    ``U_i = d_i (x_i - abar(t_i)) - exp(eta_i) sum_{t <= t_i} dH(t) (x_i - a(t))`` where the sum
    runs over the event times (Efron terms) and a tied event takes part in its own time's terms
    with weight 1 - l/d, as in R's ``residuals.coxph(type='score')``; then multiplied by w_i."""
    p = len(beta)
    agg = time_aggregates(frame, beta, efron)
    parts = partitions or int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions") or "2")
    schema = ", ".join(
        [
            "_s string, _t double, h_full double, h_ev double",
            *[f"ha_full_{j} double, ha_ev_{j} double, abar_{j} double" for j in range(p)],
            "hc double",
            *[f"hac_{j} double" for j in range(p)],
        ]
    )

    def fn(it: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return _partition_hazards(p, efron, it)

    haz = agg.repartition(parts, "_s").mapInPandas(fn, schema)
    joined = frame.withColumn("_eta", _eta(beta)).join(haz, ["_s", "_t"])
    ev = F.col("_d") > 0
    h_at = F.when(ev, F.col("h_ev")).otherwise(F.col("h_full"))
    cols = []
    for j in range(p):
        x = F.col(f"_x{j}")
        ha_at = F.when(ev, F.col(f"ha_ev_{j}")).otherwise(F.col(f"ha_full_{j}"))
        u = F.col("_d") * (x - F.col(f"abar_{j}")) - F.exp("_eta") * (
            x * (F.col("hc") + h_at) - (F.col(f"hac_{j}") + ha_at)
        )
        cols.append((F.col("_w") * u).alias(f"wU_{j}"))
    keep = [c for c in frame.columns if not c.startswith("_x")]
    return joined.select(*keep, *[F.col(f"_x{j}") for j in range(p)], *cols)


def robust_meat(resid: DataFrame, p: int, cluster: bool) -> np.ndarray:
    """sum over clusters (rows when cluster is False) of the outer products of the summed weighted
    score residuals: the middle of the sandwich."""
    u = [F.col(f"wU_{j}") for j in range(p)]
    if cluster:
        resid = resid.groupBy("_c").agg(*[F.sum(u[j]).alias(f"wU_{j}") for j in range(p)])
        u = [F.col(f"wU_{j}") for j in range(p)]
    row = resid.agg(*[F.sum(u[j] * u[k]).alias(f"b{j}_{k}") for j, k in _pairs(p)]).first()
    assert row is not None
    return _sym(np.array([float(row[f"b{j}_{k}"]) for j, k in _pairs(p)]), p)


def fit(
    df: DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    ties: str = "efron",
    weight: str | None = None,
    strata: Sequence[str] = (),
    robust: bool = False,
    cluster: str | None = None,
    l2: float = 0.0,
    penalizer: float = 0.0,
    max_iter: int = 50,
    tol: float = 1e-7,
    partitions: int | None = None,
    local_max_groups: int = LOCAL_MAX_GROUPS,
) -> CoxResult:
    """Fit a Cox model of (time, event) on ``covariates`` (numeric columns of df; one row per
    person, time >= 0, event 0/1) with ``ties`` 'efron' or 'breslow', optional case ``weight``
    column, ``strata`` columns (separate baseline hazards: matched sets, PS strata), a ridge
    penalty ``l2`` (0.5 * l2 * |beta|^2 subtracted from the log-likelihood) and/or lifelines' ridge
    ``penalizer`` (``CoxPHFitter(penalizer=..., l1_ratio=0)``: 0.5 * n * penalizer * sum (sd_j beta_j)^2,
    sd_j the covariate's unweighted sample SD, n the rows; on standardised covariates simply
    0.5 * n * penalizer * |beta|^2) and, with ``robust``
    (implied by ``cluster``), the sandwich variance. Newton-Raphson from beta = 0 with step halving
    until the largest step is below ``tol`` (stopping early past |coef| RUNAWAY). Returns a CoxResult; ValueError on unusable input (no
    events, a singular information matrix: a constant covariate or one collinear with others).
    A coefficient that runs away (monotone likelihood: a covariate separates events) ends with
    converged=False and a diagnostic, never a silent number. When the rows fall into at most
    ``local_max_groups`` distinct (stratum, time, event, covariates) groups, their sums (no ids, no
    other columns) are collected once and the Newton steps run on the driver (0: never)."""
    if ties not in TIES:
        raise ValueError(f"Cox model: ties must be one of {TIES}, not {ties!r}")
    efron = ties == "efron"
    robust = robust or cluster is not None
    p = len(covariates)
    # few distinct (stratum, time, event, covariates) groups (binary covariates, small strata): their
    # sums on the driver from one Spark job, the checks, Newton steps and robust variance there
    local = None
    if local_max_groups > 0 and cluster is None:
        local = _compress_raw(_raw(df, time, event, covariates, weight, strata, cluster), p, local_max_groups)
    frame: DataFrame | None = None
    if local is not None:
        checks = _local_checks(local, p)
        means, n, events = _checked(checks, time, event, covariates, weight)
        for j in range(p):
            local[f"_x{j}"] = local[f"_x{j}"].astype(float) - means[j]
    else:
        frame, _means, n, events, checks = _prepare(df, time, event, covariates, weight, strata, cluster)
        # partitioned by stratum once and cached: every Newton step is then one narrow stage
        parts = partitions or int(df.sparkSession.conf.get("spark.sql.shuffle.partitions") or "2")
        frame = frame.repartition(parts, "_s").cache()
    pen = _penalty(checks, p, n, l2, penalizer)
    if events == 0:
        if frame is not None:
            frame.unpersist()
        raise ValueError(f"Cox model: no events in {event} among {n} rows")
    try:

        def derivs(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            if local is not None:
                return _driver_derivatives(local, b, efron)
            assert frame is not None
            return derivatives(frame, b, efron, partitions, by_stratum=True)

        beta = np.zeros(p)
        ll, g, h = derivs(beta)
        ll0 = ll
        diagnostics: list[str] = []
        converged, it = False, 0
        for step_no in range(1, max_iter + 1):
            it = step_no
            info = h + np.diag(pen)
            score = g - pen * beta
            try:
                step = np.linalg.solve(info, score)
            except np.linalg.LinAlgError as e:
                raise ValueError(
                    f"Cox model: the information matrix is singular (a constant covariate, or one collinear with others among {list(covariates)})"
                ) from e
            new = beta + step
            for _ in range(30):
                ll_new, g_new, h_new = derivs(new)
                pen_new = ll_new - 0.5 * float(new @ (pen * new))
                if np.isfinite(pen_new) and pen_new >= ll - 0.5 * float(beta @ (pen * beta)) - 1e-12 * abs(ll):
                    break
                new = beta + (new - beta) / 2  # step halving
            max_step = float(np.max(np.abs(new - beta)))
            beta, ll, g, h = new, ll_new, g_new, h_new
            if max_step < tol:  # quadratic convergence: beta is now within ~tol^2 of the optimum
                converged = True
                break
            if np.max(np.abs(beta)) > RUNAWAY:
                break
        info = h + np.diag(pen)
        var = np.linalg.inv(info)
        if not converged:
            diagnostics.append(f"Newton-Raphson did not converge in {max_iter} iterations")
        big = [covariates[j] for j in range(p) if abs(beta[j]) > RUNAWAY]
        if big:
            converged = False
            diagnostics.append(
                f"coefficients of {big} run away (|log HR| > {RUNAWAY:g}): the covariate separates events (monotone likelihood)"
            )
        robust_var = None
        if robust:
            if local is not None:
                meat = _driver_meat(local, beta, efron)
            else:
                assert frame is not None
                meat = robust_meat(score_residuals(frame, beta, efron, partitions), p, cluster is not None)
            robust_var = var @ meat @ var
        for msg in diagnostics:
            log.warning("Cox model: %s", msg)
        return CoxResult(
            covariates=tuple(covariates),
            coef=beta,
            var=var,
            robust_var=robust_var,
            loglik=ll - 0.5 * float(beta @ (pen * beta)),
            loglik0=ll0,
            n=n,
            events=events,
            iterations=it,
            converged=converged,
            ties=ties,
            diagnostics=tuple(diagnostics),
        )
    finally:
        if frame is not None:
            frame.unpersist()
