"""Risks that are risks, and their reasons (pure: DataFrames, arrays and numbers in and out).

- ``Calibration``: the map from a model's output probability to a calibrated risk, fitted on a
  calibration split disjoint from the training and test splits. ``platt``: logistic regression of
  the label on logit(p) (two numbers); ``isotonic``: MLlib's isotonic regression of the label on
  p (boundaries and values, linear between them, constant outside, as MLlib predicts);
  ``none``: the identity. It is stored with the logged model (MLmodel metadata), so batch scoring
  and the server apply the same map.
- ``calibration_metrics``: calibration-in-the-large (intercept of the label on an offset of
  logit(p)), slope (logistic regression of the label on logit(p)), Brier score and a 10-bin
  calibration curve over deciles of the risk with Wilson 95 % intervals of the observed rate.
- ``LinearRisk``: a fitted logistic pipeline (median imputation, one-hot, standard scaling,
  coefficients) as plain numbers, applied in numpy: the margin, each feature's contribution
  (coefficient x standardised value, one-hot slots summed per feature: they add up to the margin
  minus the intercept exactly), and the reasons in words with the patient's value and the
  cohort median (the imputer's training median) as reference.
- ``band``: a risk band from configured thresholds.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # at module level: the pandas UDF's type hints are resolved in this module's namespace
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.frames import approx_quantiles

EPS = 1e-12
log = logging.getLogger(__name__)


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) elementwise, p clipped to [EPS, 1 - EPS] so that 0 and 1 give finite values."""
    q = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) elementwise: the inverse of ``logit``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def _logit_col(p: Column) -> Column:
    q = F.least(F.greatest(p, F.lit(EPS)), F.lit(1 - EPS))
    return F.log(q / (1 - q))


@dataclass(frozen=True)
class Calibration:
    """A fitted recalibration map (see the module docstring)."""

    method: str = "none"
    a: float = 0.0
    b: float = 1.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    n: int = 0

    def apply(self, p: np.ndarray) -> np.ndarray:
        """The calibrated risks of probabilities ``p`` (array in, array out): platt: sigmoid(a + b logit(p));
        isotonic: linear between the boundaries x -> y, constant outside; any other method: p unchanged."""
        p = np.asarray(p, float)
        if self.method == "platt":
            return sigmoid(self.a + self.b * logit(p))
        if self.method == "isotonic":
            return np.interp(p, np.array(self.x), np.array(self.y))
        return p

    def column(self, p: Column) -> Column:
        """The same map as a Spark column (isotonic through a pandas UDF with ``np.interp``)."""
        if self.method == "platt":
            return 1.0 / (1.0 + F.exp(-(F.lit(self.a) + F.lit(self.b) * _logit_col(p))))
        if self.method == "isotonic":
            from pyspark.sql.functions import pandas_udf

            xs, ys = np.array(self.x), np.array(self.y)

            @pandas_udf("double")  # type: ignore[call-overload]
            def interp(s: pd.Series) -> pd.Series:
                return pd.Series(np.interp(s.to_numpy(float), xs, ys))

            return interp(p)
        return p

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (the model's metadata); ``from_dict`` reads it back."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Calibration:
        """The map ``to_dict`` wrote (numbers cast to float and int, absent ones at their defaults); KeyError
        when ``method`` is missing."""
        return Calibration(
            method=d["method"],
            a=float(d.get("a", 0.0)),
            b=float(d.get("b", 1.0)),
            x=tuple(float(v) for v in d.get("x", ())),
            y=tuple(float(v) for v in d.get("y", ())),
            n=int(d.get("n", 0)),
        )


def pairs(df: DataFrame, p: str = "p", label: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """(label, p) of df's rows as two float arrays on the driver, rows with either null left out.

    For a calibration or held-out split of a person-level cohort: 16 bytes a person (4 MB for the
    250,000 held-out persons of a 1,000,000-patient cohort). One Spark job, where fitting and
    checking calibration with Spark aggregates took one job per Newton or L-BFGS step (dozens on
    a split of any size)."""
    rows = (
        df.select(F.col(label).cast("double").alias("y"), F.col(p).cast("double").alias("p"))
        .where(F.col("y").isNotNull() & F.col("p").isNotNull())
        .collect()
    )
    if not rows:
        return np.zeros(0), np.zeros(0)
    a = np.array(rows, dtype=float).reshape(len(rows), 2)
    return a[:, 0], a[:, 1]


def logistic_mle(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, tol: float = 1e-10) -> np.ndarray:
    """Unpenalised maximum-likelihood coefficients of logit P(y = 1) = offset + x @ beta (x: n x k,
    with its own constant column where one is wanted), by Newton's method: the fit statsmodels'
    GLM (Binomial) gives. ValueError when it does not converge in 100 steps (outcomes separated
    by x: the likelihood has no maximum)."""
    x = np.asarray(x, float).reshape(len(y), -1)
    off = np.zeros(len(y)) if offset is None else np.asarray(offset, float)
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        mu = sigmoid(off + x @ beta)
        w = mu * (1 - mu)
        step = np.linalg.lstsq(x.T @ (x * w[:, None]), x.T @ (y - mu), rcond=None)[0]
        beta = beta + step
        if not np.all(np.isfinite(beta)):
            break
        if np.max(np.abs(step)) < tol * max(1.0, float(np.max(np.abs(beta)))):
            return beta
    raise ValueError(
        f"the logistic fit of {len(y)} outcomes did not converge: the outcomes are separated by the score "
        "(every case scored above every control), so no finite recalibration exists"
    )


def fit_calibration(df: DataFrame, method: str, p: str = "p", label: str = "label") -> Calibration:
    """Fit ``method`` (platt | isotonic | none) on df's (p, label) rows: the calibration split,
    unweighted (the risk is about patients as they come, whatever weighting helped training).
    platt: the maximum-likelihood logistic regression of the label on logit(p), on the driver
    (``pairs``, ``logistic_mle``); when the output separates the split's outcomes no finite map
    exists, and the output is kept (method "none", with a warning); isotonic: MLlib's isotonic
    regression."""
    if method == "none":
        return Calibration()
    if method == "platt":
        y, q = pairs(df, p, label)
        try:
            a, b = logistic_mle(np.column_stack([np.ones(len(y)), logit(q)]), y)
        except ValueError:
            # no finite Platt map (a tiny split the model orders perfectly): the model's own output,
            # said in the log and in the stored map's method, rather than a map of huge coefficients
            log.warning(
                "Platt recalibration: the model's output separates the %d patients of the calibration split; "
                "the output is kept uncalibrated (raise jobs.train.calibration_fraction)",
                len(y),
            )
            return Calibration("none", n=len(y))
        return Calibration("platt", a=float(a), b=float(b), n=len(y))
    if method == "isotonic":
        from pyspark.ml.regression import IsotonicRegression

        d = df.select(F.col(label).cast("double").alias("label"), F.col(p).cast("double").alias("p"))
        iso = IsotonicRegression(featuresCol="p", labelCol="label").fit(d)
        return Calibration(
            "isotonic",
            x=tuple(float(v) for v in iso.boundaries.toArray()),
            y=tuple(float(v) for v in iso.predictions.toArray()),
            n=d.count(),
        )
    raise ValueError(f"unknown calibration {method!r}: platt, isotonic or none (jobs.train.calibration)")


def _wilson(k: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:  # z: the 97.5 % normal quantile
    if n == 0:
        return (float("nan"), float("nan"))
    ph = k / n
    d = 1 + z * z / n
    c = (ph + z * z / (2 * n)) / d
    h = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def calibration_metrics(df: DataFrame, p: str = "p", label: str = "label", bins: int = 10) -> dict[str, Any]:
    """Calibration of risks ``p`` against outcomes ``label`` (a held-out split), computed on the
    driver from ``pairs`` (rows with a null p or label left out).

    intercept: calibration-in-the-large, a in logit P(y) = a + logit(p) (logit(p) an offset);
    slope: b in logit P(y) = a' + b logit(p); both unpenalised maximum likelihood
    (``logistic_mle``). Brier; curve: ``bins`` bins at the deciles of p (the lower empirical
    quantile: a bin holds the risks above one edge and up to the next), each with its mean p,
    observed rate, n and the Wilson 95 % interval of the rate."""
    y, q = pairs(df, p, label)
    n = len(y)
    out: dict[str, Any] = {
        "brier": float(np.mean((q - y) ** 2)) if n else 0.0,
        "n": n,
        "observed_rate": float(np.mean(y)) if n else 0.0,
        "mean_risk": float(np.mean(q)) if n else 0.0,
        "intercept": None,
        "slope": None,
        "curve": [],
    }
    if n == 0:
        return out
    edges = np.quantile(q, [i / bins for i in range(1, bins)], method="inverted_cdf")
    b = np.searchsorted(edges, q, side="left")  # the number of edges strictly below each risk
    for k in np.unique(b):
        m = b == k
        cases, nk = float(y[m].sum()), int(m.sum())
        lo, hi = _wilson(cases, nk)
        out["curve"].append(
            {"bin": int(k), "mean_risk": float(q[m].mean()), "observed": cases / nk, "n": nk, "lo": lo, "hi": hi}
        )
    rate = out["observed_rate"]
    if 0 < rate < 1:
        lp = logit(q)
        # with both outcomes present the intercept (logit(p) an offset) always has a finite maximum
        out["intercept"] = float(logistic_mle(np.ones((n, 1)), y, offset=lp)[0])
        try:
            out["slope"] = float(logistic_mle(np.column_stack([np.ones(n), lp]), y)[1])
        except ValueError:  # the risks separate the outcomes (a tiny split): no finite slope to report
            log.warning("calibration slope: the %d risks separate the outcomes; not reported", n)
    return out


def band(risk: float | None, thresholds: tuple[float, ...], names: tuple[str, ...]) -> str | None:
    """names[i] for the first threshold the risk is below; the last name at or above all."""
    if risk is None or (isinstance(risk, float) and math.isnan(risk)):
        return None
    for t, nme in zip(thresholds, names, strict=False):
        if risk < t:
            return nme
    return names[len(thresholds)]


def band_column(risk: Column, thresholds: tuple[float, ...], names: tuple[str, ...]) -> Column:
    """``band`` as a Spark column: names[i] for the first threshold the risk is below, the last name at or
    above all, null for a null risk."""
    out = None
    for t, nme in zip(thresholds, names, strict=False):
        out = F.when(risk < F.lit(t), nme) if out is None else out.when(risk < F.lit(t), nme)
    last = F.lit(names[len(thresholds)])
    return F.when(risk.isNull(), F.lit(None).cast("string")).otherwise(last if out is None else out.otherwise(last))


# ----------------------------------------------------------------------------- words

LAB_NAMES = {
    "hba1c": "HbA1c",
    "glucose": "Glucose",
    "bmi": "BMI",
    "weight": "Weight",
    "sbp": "Systolic BP",
    "dbp": "Diastolic BP",
    "cholesterol_total": "Total cholesterol",
    "cholesterol_hdl": "HDL cholesterol",
    "cholesterol_ldl": "LDL cholesterol",
    "triglycerides": "Triglycerides",
    "creatinine": "Creatinine",
    "height": "Height",
}
STAT_WORDS = {
    "last": "last",
    "mean": "mean",
    "min": "lowest",
    "max": "highest",
    "slope": "change per year",
    "count": "number of measurements",
}
FLAG_PREFIXES = ("cond_", "has_", "drug_", "charlson_")
FLAGS = {"female", "age_90_plus", "has_genome"}


def units_file() -> Any:
    """The path of the unit vocabulary (schemas/vocab/units.yaml)."""
    from omicslake.resources import resource_dir

    return resource_dir("schemas") / "vocab" / "units.yaml"


def lab_units(path: Any = None) -> dict[str, str]:
    """Lab name -> canonical unit, from the unit vocabulary (for the reasons' words)."""
    import yaml

    text = (path or units_file()).read_text()
    return {v["name"]: v["unit"] for v in (yaml.safe_load(text) or {}).values()}


@dataclass(frozen=True)
class FeatureWords:
    """How a feature reads: a label, a unit, and whether it is a yes/no flag."""

    label: str
    unit: str = ""
    flag: bool = False


def feature_words(name: str, units: dict[str, str]) -> FeatureWords:
    """Words for a gold feature column (lab_<lab>_<stat>_<days>d, age_at_index, cond_<group>, ...);
    ``units``: lab name -> canonical unit (schemas/vocab/units.yaml)."""
    m = re.fullmatch(r"lab_(.+)_(last|mean|min|max|slope|count)_(\d+)d", name)
    if m:
        lab, stat, days = m.group(1), m.group(2), int(m.group(3))
        span = f"{days // 365} y" if days % 365 == 0 else f"{days} d"
        unit = "" if stat == "count" else units.get(lab, "") + ("/y" if stat == "slope" and units.get(lab) else "")
        return FeatureWords(f"{LAB_NAMES.get(lab, lab.replace('_', ' '))} ({STAT_WORDS[stat]}, {span})", unit)
    if name == "age_at_index":
        return FeatureWords("Age", "y")
    if name == "female":
        return FeatureWords("Female", flag=True)
    if name == "age_90_plus":
        return FeatureWords("Aged 90 or over", flag=True)
    if name == "prs":
        return FeatureWords("Polygenic risk score")
    if re.fullmatch(r"pc\d+", name):
        return FeatureWords(f"Genetic ancestry PC{name[2:]}")
    if name == "charlson_index":
        return FeatureWords("Charlson comorbidity index")
    for pre in FLAG_PREFIXES:
        if name.startswith(pre):
            rest = name[len(pre) :]
            rest = re.sub(r"_\d+d$", "", rest).replace("_", " ")
            what = {"cond_": "History of", "has_": "Has", "drug_": "Prescribed", "charlson_": "Comorbidity:"}[pre]
            return FeatureWords(f"{what} {rest}", flag=name not in ("charlson_index",))
    return FeatureWords(name.replace("_", " ").capitalize())


def _fmt(v: float, unit: str) -> str:
    s = f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{s} {unit}".strip() if unit and unit != "y" else (f"{s} years" if unit == "y" else s)


def reason_text(w: FeatureWords, value: Any, reference: Any, contribution: float, categorical: bool = False) -> str:
    """'HbA1c (last, 3 y) 6.3 % (cohort median 5.6 %) raises risk'."""
    verb = "raises risk" if contribution > 0 else "lowers risk" if contribution < 0 else "does not change risk"
    if categorical:
        shown = "not recorded" if value is None else str(value)
        return f"{w.label}: {shown} (most common: {reference}) {verb}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{w.label} not recorded (cohort median {_fmt(float(reference), w.unit)} assumed) {verb}"
    if w.flag and float(value) in (0.0, 1.0):
        ref = "yes" if float(reference) >= 0.5 else "no"
        return f"{w.label}: {'yes' if float(value) == 1.0 else 'no'} (most patients: {ref}) {verb}"
    return f"{w.label} {_fmt(float(value), w.unit)} (cohort median {_fmt(float(reference), w.unit)}) {verb}"


# ----------------------------------------------------------------------------- the logistic model in numpy


@dataclass(frozen=True)
class LinearRisk:
    """A fitted logistic pipeline (Imputer -> StringIndexer/OneHot -> Assembler -> StandardScaler
    -> LogisticRegression) as numbers. Slots follow the assembler: numeric features, then each
    categorical feature's one-hot slots (one per training level, then one for unseen or missing)."""

    numeric: tuple[str, ...]
    medians: tuple[float, ...]
    categorical: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    modes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    units: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """Numeric then categorical feature names: the fields every row must carry."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (tuples as lists), for the model's metadata; ``from_dict`` reads
        it back."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()} | {
            "levels": [list(lv) for lv in self.levels]
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LinearRisk:
        """The model ``to_dict`` wrote; KeyError for a missing field (``units`` may be absent)."""
        return LinearRisk(
            numeric=tuple(d["numeric"]),
            medians=tuple(float(v) for v in d["medians"]),
            categorical=tuple(d["categorical"]),
            levels=tuple(tuple(lv) for lv in d["levels"]),
            modes=tuple(d["modes"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            coef=tuple(float(v) for v in d["coef"]),
            intercept=float(d["intercept"]),
            units=dict(d.get("units", {})),
        )

    @staticmethod
    def preprocessing(model: Any, units: dict[str, str] | None = None) -> LinearRisk:
        """The preprocessing stages' numbers of a fitted PipelineModel built by ``model.preprocessing``
        (any classifier last): numeric features and their imputer medians, string features and their
        levels (most common first), the scaler's mean (when it centres) and std; coefficients 0."""
        stages = {type(s).__name__: s for s in model.stages}
        numeric: list[str] = []
        medians: list[float] = []
        if "ImputerModel" in stages:
            imp = stages["ImputerModel"]
            numeric = list(imp.getInputCols())
            surrogate = imp.surrogateDF.first()
            medians = [float(surrogate[c]) for c in numeric]
        categorical: list[str] = []
        levels: list[tuple[str, ...]] = []
        if "StringIndexerModel" in stages:
            ix = stages["StringIndexerModel"]
            categorical = list(ix.getInputCols())
            levels = [tuple(lab) for lab in ix.labelsArray]
        n = len(numeric) + sum(len(lv) + 1 for lv in levels)  # + the slot of unseen or missing levels
        scaler = stages.get("StandardScalerModel")
        return LinearRisk(
            numeric=tuple(numeric),
            medians=tuple(medians),
            categorical=tuple(categorical),
            levels=tuple(levels),
            modes=tuple(lv[0] if lv else "" for lv in levels),  # StringIndexer orders levels by frequency
            mean=tuple(float(v) for v in scaler.mean.toArray()) if scaler and scaler.getWithMean() else (0.0,) * n,
            std=tuple(float(v) for v in scaler.std.toArray()) if scaler and scaler.getWithStd() else (1.0,) * n,
            coef=(0.0,) * n,
            intercept=0.0,
            units=dict(units or {}),
        )

    @staticmethod
    def from_pipeline(model: Any, units: dict[str, str] | None = None) -> LinearRisk:
        """Numbers of a fitted MLlib logistic PipelineModel built by ``model.preprocessing``."""
        from dataclasses import replace

        lr = model.stages[-1]
        if type(lr).__name__ != "LogisticRegressionModel":
            raise ValueError(f"LinearRisk needs a logistic model, not {type(lr).__name__}")
        return replace(
            LinearRisk.preprocessing(model, units),
            coef=tuple(float(v) for v in lr.coefficients.toArray()),
            intercept=float(lr.intercept),
        )

    def design(self, rows: dict[str, Any] | Any) -> np.ndarray:
        """The assembled, imputed (unscaled) matrix of a pandas DataFrame (or a column mapping)."""
        cols: list[np.ndarray] = []
        n = len(rows[self.features[0]]) if self.features else 0
        for c, med in zip(self.numeric, self.medians, strict=True):
            x = np.asarray(rows[c], dtype=float)
            cols.append(np.where(np.isnan(x), med, x))
        for c, lv in zip(self.categorical, self.levels, strict=True):
            vals = list(rows[c])
            known = [v in lv for v in vals]
            for level in lv:
                cols.append(np.array([1.0 if v == level else 0.0 for v in vals]))
            # StringIndexer(keep) sends unseen and missing levels to index len(levels); OneHotEncoder
            # (keep, dropLast) gives that index its own slot
            cols.append(np.array([0.0 if k else 1.0 for k in known]))
        m = np.column_stack(cols) if cols else np.zeros((n, 0))
        if m.shape[1] != len(self.coef):
            raise ValueError(f"{m.shape[1]} slots built but the model has {len(self.coef)} coefficients")
        return m

    def slot_contributions(self, rows: Any) -> np.ndarray:
        """(n, slots) array: each assembled slot's coefficient x standardised value (0 where the training std
        was 0); ``rows`` as for ``design``."""
        std = np.array(self.std)
        inv = np.where(std != 0, 1.0 / np.where(std != 0, std, 1.0), 0.0)  # MLlib's StandardScaler: 0 where std is 0
        return (self.design(rows) - np.array(self.mean)) * inv * np.array(self.coef)

    def contributions(self, rows: Any) -> np.ndarray:
        """(n, features): coefficient x standardised value, one-hot slots summed per feature; each
        row sums to margin - intercept."""
        s = self.slot_contributions(rows)
        k = len(self.numeric)
        out = [s[:, :k]]
        j = k
        for lv in self.levels:
            out.append(s[:, j : j + len(lv) + 1].sum(axis=1, keepdims=True))
            j += len(lv) + 1
        return np.hstack(out) if out else s

    def margin(self, rows: Any) -> np.ndarray:
        """The log-odds per row (array of n): intercept + the sum of the slot contributions."""
        return self.intercept + self.slot_contributions(rows).sum(axis=1)

    def reasons(self, rows: Any, contributions: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """Top ``k`` features by |contribution| per row, with value, reference and words."""
        feats = self.features
        refs: list[Any] = [*self.medians, *self.modes]
        vals = {f: list(rows[f]) for f in feats}
        out = []
        for i in range(contributions.shape[0]):
            order = np.argsort(-np.abs(contributions[i]), kind="stable")[:k]
            items = []
            for j in order:
                name = feats[j]
                cat = j >= len(self.numeric)
                raw = vals[name][i]
                if cat:
                    value: Any = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw)
                else:
                    value = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else float(raw)
                c = float(contributions[i, j])
                items.append(
                    {
                        "feature": name,
                        "value": None if cat else value,
                        "level": value if cat else None,
                        "reference": None if cat else float(refs[j]),
                        "contribution": c,
                        "direction": "raises" if c > 0 else "lowers" if c < 0 else "none",
                        "text": reason_text(feature_words(name, self.units), value, refs[j], c, categorical=cat),
                    }
                )
            out.append(items)
        return out


# ----------------------------------------------------------------------------- drift (population stability index)

PSI_FLOOR = 1e-4  # a share of 0 in one of the two distributions counts as this (PSI is infinite otherwise)


def drift_reference(df: DataFrame, numeric: list[str], categorical: list[str], bins: int = 10) -> dict[str, Any]:
    """Per feature the bins a later batch is compared in and the training shares in them:
    numeric: the deciles' edges (distinct) plus a bin for missing values; categorical (string columns): the
    levels seen (shares), anything else in 'other'. Three passes over df (quantiles, the categorical
    levels, the shares)."""
    probs = [i / bins for i in range(1, bins)]
    qs = approx_quantiles(df, numeric, probs, 1e-3)
    ref: dict[str, Any] = {}
    for c, edges in zip(numeric, qs, strict=True):
        ref[c] = {"edges": sorted(set(float(e) for e in edges))}
    ref.update({c: {"levels": levels} for c, levels in _top_levels(df, categorical, 20).items()})
    shares = bin_shares(df, ref)
    for c in ref:
        ref[c]["p"] = shares[c]
    return ref


def _top_levels(df: DataFrame, columns: list[str], k: int) -> dict[str, list[str]]:
    """Per string column its ``k`` most frequent values (ties in value order), nulls then left out:
    one aggregate for all columns, ranked in Spark (only k rows a column reach the driver)."""
    if not columns:
        return {}
    from pyspark.sql import Window

    pairs = F.array(*[F.struct(F.lit(i).alias("i"), F.col(c).alias("v")) for i, c in enumerate(columns)])
    counts = df.select(F.explode(pairs).alias("x")).groupBy("x.i", "x.v").count()
    rank = F.row_number().over(Window.partitionBy("i").orderBy(F.desc("count"), F.col("v").asc_nulls_last()))
    top = counts.withColumn("r", rank).where((F.col("r") <= k) & F.col("v").isNotNull()).orderBy("i", "r").collect()
    out: dict[str, list[str]] = {c: [] for c in columns}
    for r in top:
        out[columns[r["i"]]].append(r["v"])
    return out


def _sql_double(e: float) -> str:
    """A double as a Spark SQL literal: repr round-trips it exactly and the D suffix reads it as a double;
    an infinite edge (a feature holding infinities) through Spark's cast of 'inf' / '-inf'."""
    e = float(e)
    return f"{e!r}D" if math.isfinite(e) else f"CAST('{e!r}' AS DOUBLE)"


def _bin_expr(c: str, spec: dict[str, Any]) -> tuple[Column, int]:
    if "edges" in spec:
        # one SQL text: built from Column objects it took one JVM call per operator, seconds at ~150 features
        n = len(spec["edges"]) + 1
        x = f"CAST(`{c.replace('`', '``')}` AS DOUBLE)"
        above = " + ".join(f"CAST({x} > {_sql_double(e)} AS INT)" for e in spec["edges"]) or "0"
        return F.expr(f"CASE WHEN {x} IS NULL OR isnan({x}) THEN {n} ELSE {above} END"), n + 1
    levels = spec["levels"]
    b = F.lit(len(levels))
    for i, lv in reversed(list(enumerate(levels))):
        b = F.when(F.col(c) == F.lit(lv), F.lit(i)).otherwise(b)
    return F.when(F.col(c).isNull(), F.lit(len(levels) + 1)).otherwise(b), len(levels) + 2


def bin_shares(df: DataFrame, ref: dict[str, Any]) -> dict[str, list[float]]:
    """Shares of df's rows in each feature's reference bins: one pass, each row exploded into one
    (feature, bin) pair per feature and counted by pair (a single aggregate of one column per bin
    of every feature took Catalyst tens of seconds to plan at ~150 features)."""
    if not ref:
        return {}
    names = list(ref)
    sizes, pairs = {}, []
    for i, c in enumerate(names):
        b, n = _bin_expr(c, ref[c])
        sizes[c] = n
        pairs.append(F.struct(F.lit(i).alias("f"), b.cast("int").alias("b")))
    counts = (
        df.select(F.explode(F.array(*pairs)).alias("p"))
        .groupBy(F.col("p.f").alias("f"), F.col("p.b").alias("b"))
        .count()
        .collect()
    )
    got: dict[tuple[int, int], int] = {(int(r["f"]), int(r["b"])): int(r["count"]) for r in counts}
    # every row lands in exactly one bin of each feature: the first feature's bins sum to the row count
    total = max(sum(v for (f, _), v in got.items() if f == 0), 1)
    return {c: [got.get((i, k), 0) / total for k in range(sizes[c])] for i, c in enumerate(names)}


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index: sum (a - e) ln(a / e) over bins (shares floored at PSI_FLOOR)."""
    e = np.maximum(np.asarray(expected, float), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, float), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


REASON = (
    "struct<feature:string,value:double,level:string,reference:double,contribution:double,direction:string,text:string>"
)


def check_bands(thresholds: tuple[float, ...], names: tuple[str, ...]) -> None:
    """ConfigError unless the thresholds are increasing risks in (0, 1) with one band name more."""
    from omicslake.errors import ConfigError

    t = list(thresholds)
    if len(names) != len(t) + 1 or t != sorted(t) or any(not 0 < v < 1 for v in t):
        raise ConfigError(
            f"jobs.score.band_thresholds {t} must be increasing risks in (0, 1) and jobs.score.band_names "
            f"{list(names)} one name more than thresholds"
        )


def explain(linear: LinearRisk, k: int) -> Any:
    """mapInPandas function: per patient the contributions (JSON) and the top-k reasons (JSON)."""
    import pandas as pd

    def f(batches: Any) -> Any:
        for pdf in batches:
            contrib = linear.contributions(pdf)
            reasons = linear.reasons(pdf, contrib, k)
            feats = linear.features
            pdf = pdf[["person_key"]].copy()
            pdf["contributions_json"] = [json.dumps(dict(zip(feats, map(float, row), strict=True))) for row in contrib]
            pdf["reasons_json"] = [json.dumps(r) for r in reasons]
            yield pd.DataFrame(pdf)

    return f


def drift_metrics(
    features: DataFrame, predictions: DataFrame, reference: dict[str, Any] | None, threshold: float
) -> dict[str, Any]:
    """PSI of every feature and of the risk against the training data's (logged with the model);
    warnings name the features (never values) above the threshold."""
    if not reference:
        return {}
    feats = {c: spec for c, spec in reference["features"].items() if c in features.columns}
    now = bin_shares(features, feats)
    per = {c: round(psi(feats[c]["p"], now[c]), 4) for c in feats}
    risk = psi(reference["risk"]["p"], bin_shares(predictions, {"risk": reference["risk"]})["risk"])
    warnings = [
        f"feature {c}: PSI {v:.3f} > {threshold}" for c, v in sorted(per.items(), key=lambda t: -t[1]) if v > threshold
    ]
    if risk > threshold:
        warnings.insert(0, f"risk distribution: PSI {risk:.3f} > {threshold}")
    top = max(per, key=lambda k: per[k]) if per else None
    return {
        "psi_risk": round(risk, 4),
        "psi_max": per.get(top) if top else None,
        "psi_max_feature": top,
        "psi_features_over": sum(v > threshold for v in per.values()),
        "drift_warnings": warnings,
        "psi": per,
    }
