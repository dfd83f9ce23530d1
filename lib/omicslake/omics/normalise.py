"""QC and normalisation of one omics assay, on DataFrames of features with a ``values`` array.

The features stay distributed: per-sample sums are numpy partial sums per partition, reduced as
vectors of one entry per sample; per-sample medians are exact, by distributed selection (histograms
per partition narrow each sample's bracket until its middle values can be collected); per-feature
metrics and the normalised values are Spark higher-order functions over the arrays, with
per-sample vectors (library sizes, size factors, medians) as array literals.

Per assay type (``ASSAY_TYPES``):

- ``rnaseq_counts``: library size, features detected (count > 0); features expressed (count >=
  min_count) in too few samples fail ``low_counts``; values = log2 CPM, limma-voom's
  ``log2((count + prior) / (library size + 1) * 1e6)``; ``scaled`` = count / size factor, the size
  factor being DESeq2's median of ratios (over features with every count > 0).
- ``microbiome_counts``: as counts for QC; values = CLR ``ln(count + pseudocount)`` minus its mean
  over the sample's features; ``scaled`` = relative abundance (count / sample total).
- ``methylation_beta``: values = M-values ``log2(b / (1 - b))``, b clipped to [offset, 1 - offset];
  ``scaled`` = the clipped beta.
- ``proteomics_intensity``: values = log2 intensity minus the sample's median log2 intensity (a
  zero intensity is not detected: missing); missing values stay missing (no imputation);
  ``scaled`` = log2 intensity before centring.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.config import OmicsQcConfig

ASSAY_TYPES = ("rnaseq_counts", "methylation_beta", "proteomics_intensity", "microbiome_counts")
COUNTS = ("rnaseq_counts", "microbiome_counts")


@dataclass(frozen=True)
class SampleQc:
    """Per-sample metrics (arrays in sample order) and the first rule each sample failed (None: passed)."""

    total: np.ndarray
    detected: np.ndarray
    missing_fraction: np.ndarray
    rule: list[str | None]
    reason: list[str | None]
    features: int = 0  # rows (features) of the matrix

    def failing(self, more: dict[int, tuple[str, str]]) -> SampleQc:
        """A copy where the samples of ``more`` (position -> (rule, reason)) fail as well."""
        rule, reason = list(self.rule), list(self.reason)
        for j, (r, why) in more.items():
            rule[j], reason[j] = r, why
        return SampleQc(self.total, self.detected, self.missing_fraction, rule, reason, self.features)

    @property
    def passing(self) -> list[int]:
        """Positions of the samples that passed."""
        return [i for i, r in enumerate(self.rule) if r is None]


def column_sums(df: DataFrame, n: int, column: str = "values") -> dict[str, np.ndarray]:
    """Per position of the ``column`` arrays (length n) over all rows: ``sum`` of the values
    present, ``present`` (not null), ``positive`` (> 0) and ``rows``. Partial sums per partition
    (numpy over Arrow blocks), added up in a tree: the driver holds a few vectors of n, never the
    matrix."""

    def partial(blocks: Iterator[np.ndarray]) -> Partial:
        s, present, positive, rows = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(1)
        for m in blocks:
            ok = ~np.isnan(m)
            s += np.where(ok, m, 0.0).sum(axis=0)
            present += ok.sum(axis=0)
            positive += (np.nan_to_num(m) > 0).sum(axis=0)
            rows += len(m)
        return [s, present, positive, rows]

    out = _partials(_source(df, n, column), partial, lambda a, b: [x + y for x, y in zip(a, b, strict=True)])
    return {"sum": out[0], "present": out[1], "positive": out[2], "rows": out[3]}


def _blocks(batches: Iterator[Any], n: int, center: bool = False) -> Iterator[np.ndarray]:
    """Arrow batches of one ``array<double>`` column (arrays of length n) as float64 matrices of
    rows x n, a null value as NaN; a null array is left out. ``center``: each row minus its mean."""
    import pyarrow as pa

    for batch in batches:
        arr = batch.column(0)
        if arr.null_count:
            arr = arr.filter(arr.is_valid())
        if len(arr) == 0:
            continue
        flat = arr.flatten()
        if len(flat) != len(arr) * n:
            raise ValueError(f"arrays of unequal length: {len(flat)} values in {len(arr)} rows, {n} expected in each")
        m = np.asarray(flat.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, n)
        yield m - np.nanmean(m, axis=1, keepdims=True) if center else m


Partial = list[np.ndarray]


@dataclass(frozen=True)
class _Source:
    """The rows to select from: a DataFrame of one ``array<double>`` column ``v`` of length ``n``;
    ``center``: each array minus its mean, in the worker (see ``column_medians``)."""

    df: DataFrame
    n: int
    center: bool = False


def _source(df: DataFrame, n: int, column: str, center: bool = False) -> _Source:
    return _Source(df.select(F.col(column).cast("array<double>").alias("v")), n, center)


def _partials(src: _Source, fn: Any, combine: Any) -> Partial:
    """``fn`` (matrices of rows x n -> a list of numpy arrays) run on every partition of ``src`` and
    the results combined with ``combine`` in a tree on the executors: the driver gets one result.
    Arrow batches of about 1 M values (8 MB), whatever the width of the arrays."""
    import pickle

    import pyarrow as pa

    def part(batches: Iterator[Any]) -> Iterator[Any]:
        yield pa.RecordBatch.from_pydict({"p": [pickle.dumps(fn(_blocks(batches, n, center)))]})

    n, center = src.n, src.center
    spark = src.df.sparkSession
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, str(max(1, (1 << 20) // max(n, 1))))
    try:
        rdd = src.df.mapInArrow(part, "p binary").rdd.map(lambda r: pickle.loads(r.p))
        return rdd.treeReduce(combine) if rdd.getNumPartitions() else fn(iter(()))
    finally:
        spark.conf.set(key, before)


def _lowest(m: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.where(where, m, np.inf).min(axis=0)


def column_medians(
    df: DataFrame, n: int, column: str = "values", limit: int = 512, bins: int = 0, center_rows: bool = False
) -> np.ndarray:
    """The exact median per position of the ``column`` arrays (length n) over the rows (nulls and
    NaN left out; NaN where a position has no value); a median of an even count is the mean of the
    middle two.

    Distributed selection that never holds the matrix in the driver nor explodes it into (position,
    value) rows: a first pass counts each position's values and their range; each further pass
    adds up per-partition numpy histograms (``bins`` per position; 0: about 4 M counts in all) of
    the values inside every position's bracket and narrows the bracket to the bins that hold its
    middle ranks; a bracket of one distinct value is its median, and once a bracket holds at most
    ``limit`` values they are collected and the middle ranks read off. Values below a bracket are
    counted again in every pass, so a rank is never carried over from a rounded bin edge.

    ``center_rows``: the medians of each array minus its mean (DESeq2's ratios), the subtraction
    done in numpy as the rows are read. In Spark it cannot be: a row's mean as a column referenced
    once inside ``transform``'s lambda is inlined by the optimizer and summed again per element."""
    src = _source(df, n, column, center_rows)
    return _select_medians(src, limit, bins or int(max(64, min(1024, 4_000_000 // max(n, 1)))))


def _select_medians(src: _Source, limit: int, bins: int) -> np.ndarray:
    n = src.n

    def ranges(blocks: Iterator[np.ndarray]) -> Partial:
        count, lo, neg_hi = np.zeros(n), np.full(n, np.inf), np.full(n, np.inf)
        for m in blocks:
            if np.isinf(m).any():
                raise ValueError("an infinite value: a median needs finite values (or null)")
            ok = ~np.isnan(m)
            count += ok.sum(axis=0)
            lo = np.minimum(lo, _lowest(m, ok))
            neg_hi = np.minimum(neg_hi, _lowest(-m, ok))
        return [count, lo, neg_hi]

    count, lo, neg_hi = _partials(
        src, ranges, lambda a, b: [a[0] + b[0], np.minimum(a[1], b[1]), np.minimum(a[2], b[2])]
    )
    total, hi = count.astype(np.int64), -neg_hi
    out = np.full(n, np.nan)
    flat = (total > 0) & (lo == hi)
    out[flat] = lo[flat]
    # one selection per middle rank: (position, rank), two for an even count, each with its own bracket
    k1, k2 = (total - 1) // 2, total // 2
    spread = np.flatnonzero((total > 0) & (lo < hi))
    twice = spread[k2[spread] != k1[spread]]
    pos = np.concatenate([spread, twice])
    rank = np.concatenate([k1[spread], k2[twice]]).astype(np.float64)
    value = np.full(len(pos), np.nan)
    tlo, thi = lo[pos], hi[pos]
    open_ = np.ones(len(pos), dtype=bool)
    for _ in range(64):  # each pass divides a bracket by ``bins``: a double's range runs out long before
        if not open_.any():
            break
        todo = np.flatnonzero(open_)
        value[todo] = _narrow(src, pos[todo], rank[todo], tlo, thi, todo, limit, bins)
        open_[todo] = np.isnan(value[todo])
    else:
        raise RuntimeError("median selection did not converge")
    first = np.full(n, np.nan)
    first[spread] = value[: len(spread)]
    second = first.copy()
    second[twice] = value[len(spread) :]
    out[spread] = (first[spread] + second[spread]) / 2.0
    return out


def _narrow(
    src: _Source,
    pos: np.ndarray,
    rank: np.ndarray,
    tlo: np.ndarray,
    thi: np.ndarray,
    todo: np.ndarray,
    limit: int,
    bins: int,
) -> np.ndarray:
    """One pass for the open selections ``todo`` (position ``pos``, 0-based ``rank``): a histogram of
    the values in each bracket [``tlo``, ``thi``] and the count below it. Returns the value of each
    selection decided now (NaN: still open) and narrows ``tlo``/``thi`` in place for the others."""
    lo, hi = tlo[todo], thi[todo]
    width = hi - lo
    t = len(pos)
    base = np.arange(t) * bins

    def histogram(blocks: Iterator[np.ndarray]) -> Partial:
        below, hist = np.zeros(t), np.zeros(t * bins)
        ilo, neg_ihi = np.full(t, np.inf), np.full(t, np.inf)
        for m in blocks:
            m = m[:, pos]
            below += (m < lo).sum(axis=0)
            inside = (m >= lo) & (m <= hi)
            with np.errstate(invalid="ignore"):  # NaN (missing) values: not inside, their bin dropped below
                b = np.clip(np.floor((m - lo) / width * bins), 0, bins - 1)
            hist += np.bincount((np.where(inside, b, 0).astype(np.int64) + base)[inside], minlength=t * bins)
            ilo = np.minimum(ilo, _lowest(m, inside))
            neg_ihi = np.minimum(neg_ihi, _lowest(-m, inside))
        return [below, hist, ilo, neg_ihi]

    def add(a: Partial, b: Partial) -> Partial:  # counts add up; the range (low, -high) takes the least
        return [a[0] + b[0], a[1] + b[1], np.minimum(a[2], b[2]), np.minimum(a[3], b[3])]

    below, hist, ilo, neg_ihi = _partials(src, histogram, add)
    ihi = -neg_ihi
    hist = hist.reshape(t, bins)
    inside = hist.sum(axis=1)
    r = rank - below  # the rank within the bracket
    if ((r < 0) | (r >= inside)).any():  # cannot happen: below is counted, never carried; a guard says so if it does
        raise RuntimeError(f"median selection lost rank {int(rank[np.argmax((r < 0) | (r >= inside))])}")
    value = np.where(ilo == ihi, ilo, np.nan)  # one distinct value left in the bracket: it is the value
    small = np.isnan(value) & (inside <= limit)
    if small.any():
        value[small] = _collect_ranks(src, pos[small], r[small], lo[small], hi[small])
    b = (hist.cumsum(axis=1) <= r[:, None]).sum(axis=1)  # the bin that holds the rank
    pad = 1e-9 * width  # a bin edge computed in floating point may sit an ulp off: widen, never narrow
    tlo[todo] = np.maximum(lo + b * width / bins - pad, ilo)
    thi[todo] = np.minimum(lo + (b + 1) * width / bins + pad, ihi)
    return value


def _collect_ranks(src: _Source, pos: np.ndarray, r: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The value of rank ``r`` among the values of position ``pos`` inside [``lo``, ``hi``] (few
    each): those values collected with their selection and sorted."""
    t = len(pos)

    def values(blocks: Iterator[np.ndarray]) -> Partial:
        which, vals = [np.zeros(0, np.int64)], [np.zeros(0)]
        for m in blocks:
            m = m[:, pos]
            i, k = np.nonzero((m >= lo) & (m <= hi))
            which.append(k)
            vals.append(m[i, k])
        return [np.concatenate(which), np.concatenate(vals)]

    which, vals = _partials(src, values, lambda a, b: [np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])])
    order = np.lexsort((vals, which))
    which, vals = which[order], vals[order]
    start = np.searchsorted(which, np.arange(t))
    at = start + r.astype(np.int64)
    end = np.append(start[1:], len(which))
    if (at >= end).any():
        raise RuntimeError("median selection lost a rank while collecting")
    return vals[at]


def sample_qc(features: DataFrame, n_samples: int, assay_type: str, t: OmicsQcConfig) -> SampleQc:
    """Library size / total intensity, features detected and missing share of every sample, and the
    first rule each fails: ``sample_missing``, ``library_size`` (counts), ``detected``."""
    s = column_sums(features, n_samples)
    n_features = float(s["rows"][0])
    counts = assay_type in COUNTS
    detected = s["positive"] if counts else s["present"]
    missing = (n_features - s["present"]) / n_features if n_features else np.zeros(n_samples)
    rules: list[str | None] = []
    reasons: list[str | None] = []
    for j in range(n_samples):
        rule = reason = None
        if missing[j] > t.max_sample_missing:
            rule, reason = "sample_missing", f"missing fraction {missing[j]:.4f} > {t.max_sample_missing}"
        elif counts and s["sum"][j] < t.min_library_size:
            rule, reason = "library_size", f"library size {s['sum'][j]:.0f} < {t.min_library_size}"
        elif n_features and detected[j] / n_features < t.min_detected_fraction:
            rule, reason = (
                "detected",
                f"{int(detected[j])} of {int(n_features)} features detected < {t.min_detected_fraction}",
            )
        rules.append(rule)
        reasons.append(reason)
    return SampleQc(s["sum"], detected.astype(np.int64), missing, rules, reasons, int(n_features))


def subset(positions: list[int], column: str = "values") -> Any:
    """Transform: ``column`` arrays restricted to ``positions`` (0-based), in that order."""

    def _subset(df: DataFrame) -> DataFrame:
        idx = F.lit([int(i) for i in positions]).cast("array<int>") if positions else F.array().cast("array<int>")
        return df.withColumn(column, F.transform(idx, lambda i: F.element_at(column, i + 1)))

    return _subset


def _share(values: Column, pred: Any) -> Column:
    return F.size(F.filter(values, pred)) / F.greatest(F.size(values), F.lit(1))


def feature_qc(assay_type: str, t: OmicsQcConfig) -> Any:
    """Transform: ``missing_fraction`` of every feature and its first failed rule (``rule``,
    ``reason``; null when it passes): ``feature_missing``, then for counts ``low_counts``."""

    def _qc(df: DataFrame) -> DataFrame:
        v = F.col("values")
        miss = _share(v, lambda x: x.isNull())
        df = df.withColumn("missing_fraction", miss.cast("double"))
        rule = F.when(F.col("missing_fraction") > t.max_feature_missing, F.lit("feature_missing"))
        reason = F.when(
            F.col("missing_fraction") > t.max_feature_missing,
            F.format_string(f"missing fraction %.4f > {t.max_feature_missing}", F.col("missing_fraction")),
        )
        if assay_type in COUNTS:
            expressed = _share(v, lambda x: x >= t.min_count)
            low = expressed < t.min_expressed_fraction
            rule = rule.when(low, F.lit("low_counts"))
            reason = reason.when(
                low,
                F.format_string(
                    f"expressed (count >= {t.min_count}) in a share %.4f of samples < {t.min_expressed_fraction}",
                    expressed,
                ),
            )
        return df.withColumn("rule", rule).withColumn("reason", reason)

    return _qc


def size_factors(features: DataFrame, n_samples: int) -> np.ndarray:
    """DESeq2's median-of-ratios size factors: per sample, exp of the median over features with
    every count > 0 of ln(count) minus the feature's mean ln(count) (its log geometric mean)."""
    logs = features.where(F.forall("values", lambda x: x.isNotNull() & (x > 0))).select(
        F.transform("values", lambda x: F.log(x)).alias("l")
    )
    # the ratios (each log minus its gene's mean log) are taken in numpy as the rows are read
    return np.exp(column_medians(logs, n_samples, "l", center_rows=True))


def _vec(x: np.ndarray) -> Column:
    return F.lit([float(v) for v in x])


def _at(vec: Column, i: Column) -> Column:
    return F.element_at(vec, i + 1)


def normalise(
    features: DataFrame, n_samples: int, assay_type: str, t: OmicsQcConfig, totals: np.ndarray
) -> tuple[DataFrame, dict[str, np.ndarray]]:
    """Normalised ``values`` and ``scaled`` arrays of QC-passed features (see the module docstring),
    with the per-sample vectors used (``size_factor``, ``median``, ``clr_mean``). ``totals``: each
    sample's total (library size) in the order of the arrays."""
    v = "values"
    extra: dict[str, np.ndarray] = {}
    if assay_type == "rnaseq_counts":
        sf = size_factors(features, n_samples)
        extra["size_factor"] = sf
        lib, sfs = _vec(totals), _vec(sf)
        values = F.transform(v, lambda x, i: F.log2((x + F.lit(t.prior_count)) / (_at(lib, i) + 1.0) * 1e6))
        scaled = F.transform(v, lambda x, i: x / _at(sfs, i))
    elif assay_type == "microbiome_counts":
        pc = t.pseudocount
        logs = features.select(F.transform(v, lambda x: F.log(x + F.lit(pc))).alias("l"))
        s = column_sums(logs, n_samples, "l")
        mean = s["sum"] / np.maximum(s["present"], 1)
        extra["clr_mean"] = mean
        means, tot = _vec(mean), _vec(totals)
        values = F.transform(v, lambda x, i: F.log(x + F.lit(pc)) - _at(means, i))
        scaled = F.transform(v, lambda x, i: x / _at(tot, i))
    elif assay_type == "methylation_beta":
        off = t.beta_offset
        clipped = F.transform(v, lambda x: F.least(F.greatest(x, F.lit(off)), F.lit(1.0 - off)))
        scaled = clipped
        values = F.transform(clipped, lambda b: F.log2(b / (1.0 - b)))
    elif assay_type == "proteomics_intensity":
        log2 = F.transform(v, lambda x: F.when(x > 0, F.log2(x)))
        med = column_medians(features.select(log2.alias("l")), n_samples, "l")
        extra["median"] = med
        meds = _vec(med)
        scaled = log2
        values = F.transform(log2, lambda x, i: x - _at(meds, i))
    else:
        raise ValueError(f"unknown assay type {assay_type!r}; one of {ASSAY_TYPES}")
    out = features.withColumn("scaled", scaled).withColumn(v, values)
    return out.transform(value_stats()), extra


def value_stats(column: str = "values") -> Any:
    """Transform: ``mean`` and sample ``variance`` (n - 1) of the values present in ``column``."""

    def _stats(df: DataFrame) -> DataFrame:
        present = F.filter(column, lambda x: x.isNotNull())
        n = F.size(present)
        total = F.aggregate(present, F.lit(0.0), lambda a, x: a + x)
        df = df.withColumn("_n", n).withColumn("mean", F.when(n > 0, total / n))
        ss = F.aggregate(
            F.filter(column, lambda x: x.isNotNull()),
            F.lit(0.0),
            lambda a, x: a + (x - F.col("mean")) * (x - F.col("mean")),
        )
        return df.withColumn("variance", F.when(F.col("_n") > 1, ss / (F.col("_n") - 1))).drop("_n")

    return _stats
