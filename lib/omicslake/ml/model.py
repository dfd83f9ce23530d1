"""Spark MLlib models on gold features (pure functions: DataFrames and settings in, models and
numbers out; MLflow lives in the jobs).

- ``split``: patient-level train/test split by a seeded hash of person_key, so a patient is in
  one split only, the same one on every run and in every table.
- ``pipeline``: median imputation of numeric features, index + one-hot encoding of string
  features, assembly, standard scaling, and the classifier chosen in config.
- ``evaluate``: AUROC, AUPRC, Brier score, a 10-bin calibration curve (deciles, Wilson CIs), the
  calibration slope and calibration-in-the-large (``risk.calibration_metrics``), overall and by subgroup;
  ROC and PR curves from 1,000 score bins (a small aggregate, never the patient rows).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.frames import canonical

NOT_FEATURES = {"person_key", "index_date", "label", "time_days", "event", "run_id", "split", "_w"}


@dataclass(frozen=True)
class FeatureColumns:
    """A model's feature columns by type: numeric (median-imputed) and categorical (string columns,
    one-hot encoded)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def all(self) -> list[str]:
        """Numeric then categorical names: the order the assembler puts them in."""
        return [*self.numeric, *self.categorical]


def feature_columns(df: DataFrame, include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> FeatureColumns:
    """Feature columns of a gold features table: glob patterns in include, minus exclude."""
    num, cat = [], []
    for name, typ in df.dtypes:
        if (
            name in NOT_FEATURES
            or not any(fnmatch.fnmatch(name, p) for p in include)
            or any(fnmatch.fnmatch(name, p) for p in exclude)
        ):
            continue
        (cat if typ == "string" else num).append(name)
    return FeatureColumns(tuple(num), tuple(cat))


def drop_empty(df: DataFrame, cols: FeatureColumns) -> tuple[FeatureColumns, list[str]]:
    """Leave out feature columns without a single value (an imputer cannot fill them; one
    aggregate over all columns)."""
    if not cols.all:
        return cols, []
    row = df.agg(*[F.count(c).alias(c) for c in cols.all]).first()
    assert row is not None
    empty = [c for c in cols.all if int(row[c]) == 0]
    return FeatureColumns(
        tuple(c for c in cols.numeric if c not in empty), tuple(c for c in cols.categorical if c not in empty)
    ), empty


def model_name(cohort: str, kind: str, registered: str | None = None) -> str:
    """The registered MLflow model name of a cohort's model: ``registered`` or omicslake_<cohort>_<kind>."""
    return registered or f"omicslake_{cohort}_{kind}"


def split_column(seed: int, test_fraction: float, calibration_fraction: float = 0.0) -> Column:
    """'test', 'calibration' or 'train' from a seeded hash of person_key (stable across runs and
    tables). The test split is the same whatever the calibration share: calibration patients come
    out of the training split (the next ``calibration_fraction`` of hash buckets)."""
    bucket = F.pmod(F.xxhash64(F.col("person_key"), F.lit(seed)), F.lit(10_000))
    test = int(round(test_fraction * 10_000))
    calib = int(round((test_fraction + calibration_fraction) * 10_000))
    return F.when(bucket < test, "test").when(bucket < calib, "calibration").otherwise("train")


def outcome_counts(df: DataFrame, label: str = "label") -> tuple[int, int]:
    """(rows, rows with the outcome: label 1) of df, in one aggregate."""
    got = df.agg(F.count(F.lit(1)), F.sum(F.col(label).cast("double"))).first()
    return (int(got[0]), int(got[1] or 0)) if got else (0, 0)


def one_outcome(n: int, cases: int) -> bool:
    """True when a split of n rows with ``cases`` outcomes cannot fit or evaluate a classifier: it is
    empty, or every row has the same label."""
    return n == 0 or cases == 0 or cases == n


def with_class_weights(df: DataFrame, balanced: bool) -> DataFrame:
    """_w: n / (2 n_class) per row when balanced (each class carries half the weight), else 1."""
    if not balanced:
        return df.withColumn("_w", F.lit(1.0))
    counts = {int(r[0]): int(r[1]) for r in df.groupBy("label").count().collect()}  # two rows
    n = sum(counts.values())
    w = {k: n / (2.0 * v) for k, v in counts.items()}
    return df.withColumn("_w", F.when(F.col("label") == 1, w.get(1, 1.0)).otherwise(w.get(0, 1.0)))


def estimator(kind: str, seed: int) -> Any:
    """An unfitted MLlib classifier of ``kind`` (logistic, random_forest or gbt) on ``features`` and
    ``label``, weighted by ``_w``, seeded; ValueError naming the kinds for any other."""
    if kind == "logistic":
        return LogisticRegression(
            featuresCol="features", labelCol="label", weightCol="_w", maxIter=200, standardization=False
        )
    if kind == "random_forest":
        return RandomForestClassifier(featuresCol="features", labelCol="label", weightCol="_w", seed=seed)
    if kind == "gbt":
        return GBTClassifier(featuresCol="features", labelCol="label", weightCol="_w", seed=seed)
    raise ValueError(f"unknown model {kind!r}: logistic, random_forest or gbt")


def preprocessing(cols: FeatureColumns, scale: bool = True, center: bool = True) -> list[Any]:
    """Stages that turn feature columns into one ``features`` vector: median imputation of
    numeric columns, index + one-hot of string columns, assembly, and (``scale``) scaling to unit
    standard deviation, (``center``) around mean 0. Shared by every model (classifiers,
    clustering, survival)."""
    stages: list[Any] = []
    imputed = [f"{c}__imp" for c in cols.numeric]
    if cols.numeric:
        stages.append(Imputer(inputCols=list(cols.numeric), outputCols=imputed, strategy="median"))
    onehot = [f"{c}__oh" for c in cols.categorical]
    if cols.categorical:
        stages.append(
            StringIndexer(
                inputCols=list(cols.categorical),
                outputCols=[f"{c}__idx" for c in cols.categorical],
                handleInvalid="keep",
            )
        )
        stages.append(
            OneHotEncoder(inputCols=[f"{c}__idx" for c in cols.categorical], outputCols=onehot, handleInvalid="keep")
        )
    stages.append(
        VectorAssembler(
            inputCols=imputed + onehot, outputCol="raw_features" if scale else "features", handleInvalid="keep"
        )
    )
    if scale:
        stages.append(StandardScaler(inputCol="raw_features", outputCol="features", withMean=center, withStd=True))
    return stages


def pipeline(cols: FeatureColumns, kind: str, seed: int) -> tuple[Pipeline, Any]:
    """(Pipeline of ``preprocessing(cols)`` then the classifier, the classifier itself: a parameter grid
    names its params); ValueError for an unknown ``kind``."""
    est = estimator(kind, seed)
    return Pipeline(stages=[*preprocessing(cols), est]), est


def tune(
    train: DataFrame,
    cols: FeatureColumns,
    kind: str,
    grid: dict[str, list[Any]],
    seed: int,
    parallelism: int = 2,
    folds: int = 3,
) -> tuple[PipelineModel, dict[str, Any], float | None]:
    """``folds``-fold cross-validation of the training split over the grid; the best model (highest
    mean AUROC over the folds) refitted on the whole training split. Returns (model, best params,
    its mean validation AUROC); a grid of one point is fitted once, without folds (AUROC None).
    One 80/20 split chose by the luck of the draw: on the 20,000-patient oracle cohort four seeds
    picked the ridge or the lasso two and two (held-out AUROC 0.776-0.782 against a bar of 0.777),
    three folds picked the lasso for every seed tried. The folds are drawn on ``train``'s canonical
    layout (``frames.canonical``, on person_key when it has one), so the same rows give the same
    model whatever files and partitions they came in."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds} (jobs.train.folds)")
    train = canonical(train, [k for k in ("person_key",) if k in train.columns])
    pipe, est = pipeline(cols, kind, seed)
    builder = ParamGridBuilder()
    for name, values in grid.items():
        if not est.hasParam(name):
            raise ValueError(
                f"{kind} has no parameter {name!r} (grid in config); it has e.g. {[p.name for p in est.params][:12]}"
            )
        builder = builder.addGrid(est.getParam(name), list(values))
    maps = builder.build()
    if len(maps) == 1:  # nothing to choose: one fit, no folds (the held-out AUROC is the estimate)
        return pipe.copy(maps[0]).fit(train), {p.name: v for p, v in maps[0].items()}, None
    evaluator = BinaryClassificationEvaluator(
        labelCol="label", rawPredictionCol="rawPrediction", metricName="areaUnderROC"
    )
    cv = CrossValidator(
        estimator=pipe, estimatorParamMaps=maps, evaluator=evaluator, numFolds=folds, seed=seed, parallelism=parallelism
    )
    fitted = cv.fit(train)
    best = int(np.argmax(fitted.avgMetrics))
    params = {p.name: v for p, v in maps[best].items()}
    return fitted.bestModel, params, float(fitted.avgMetrics[best])


def scores(model: PipelineModel, df: DataFrame) -> DataFrame:
    """df with ``p`` = the predicted probability of label 1."""
    return model.transform(df).withColumn("p", vector_to_array("probability").getItem(1))


def ranking_metrics(scored: DataFrame, columns: dict[str, Column]) -> list[dict[str, Any]]:
    """AUROC, AUPRC, Brier score, n and cases of ``scored`` (label 0/1, p) within each level of each
    column of ``columns`` (name -> a Column of levels; null is the level "None"), in one pass: one
    row per (name, level), in the order of ``columns`` and then of the levels. AUROC and AUPRC are
    None for a level with one outcome only. A null label, or a null or NaN score, is a ValueError.

    Exact at every distinct score: the ROC curve and the precision-recall curve through each
    threshold, areas by the trapezoid rule, the PR curve starting at recall 0 with the precision of
    the highest score. These are the curves of MLlib's BinaryClassificationMetrics when it keeps
    every threshold (fewer than 2 x ``numBins`` distinct scores, 1,999 for its evaluator; from there it
    merges neighbouring thresholds and its areas are approximate); the AUROC equals the
    Mann-Whitney statistic, ties counted half, as scikit-learn's ``roc_auc_score``. One query
    in all: each level used to take five Spark jobs (an aggregate, and per metric a count and an evaluator
    pass), 45 for the 9 levels of train's default subgroups."""
    from pyspark.sql import Window

    levels = [
        F.struct(F.lit(i).alias("i"), col.cast("string").alias("level")) for i, (_, col) in enumerate(columns.items())
    ]
    rows = scored.select(
        F.col("label").cast("int").alias("label"),
        F.col("p").cast("double").alias("p"),
        F.explode(F.array(*levels)).alias("g"),
    )
    # one row per distinct score of a level: its positives and negatives
    at = rows.groupBy(F.col("g.i").alias("i"), F.col("g.level").alias("level"), "p").agg(
        F.sum("label").alias("tp"),
        F.count(F.lit(1)).alias("n"),
        F.sum((F.col("p") - F.col("label")) ** 2).alias("sq"),
        F.sum((F.col("label").isNull() | F.col("p").isNull() | F.isnan("p")).cast("long")).alias("bad"),
    )
    level = Window.partitionBy("i", "level")
    down = level.orderBy(F.desc("p"))  # scores are distinct within a level: the running sums step by row
    # (column names are case-insensitive: no "P" or "N" beside "p" and "n")
    at = at.withColumn("fp", F.col("n") - F.col("tp"))
    at = (
        at.withColumn("cases", F.sum("tp").over(level))
        .withColumn("controls", F.sum("fp").over(level))
        .withColumn("ctp", F.sum("tp").over(down))
        .withColumn("cfp", F.sum("fp").over(down))
    )
    at = (
        # a level with one outcome has no curve: no division by its 0 (an error under ANSI mode)
        at.withColumn("tpr", F.when(F.col("cases") > 0, F.col("ctp") / F.col("cases")))
        .withColumn("fpr", F.when(F.col("controls") > 0, F.col("cfp") / F.col("controls")))
        .withColumn("prec", F.col("ctp") / (F.col("ctp") + F.col("cfp")))
    )
    at = at.select(
        "i",
        "level",
        "n",
        "tp",
        "sq",
        "bad",
        ((F.col("fpr") - F.lag("fpr", 1, 0.0).over(down)) * (F.col("tpr") + F.lag("tpr", 1, 0.0).over(down)) / 2).alias(
            "roc"
        ),
        (
            (F.col("tpr") - F.lag("tpr", 1, 0.0).over(down))
            * (F.col("prec") + F.coalesce(F.lag("prec", 1).over(down), F.col("prec")))
            / 2
        ).alias("pr"),
    )
    got = (
        at.groupBy("i", "level")
        .agg(F.sum("n"), F.sum("tp"), F.sum("sq"), F.sum("roc"), F.sum("pr"), F.sum("bad"))
        .orderBy("i", F.col("level").asc_nulls_first())
        .collect()
    )
    names = list(columns)
    bad = sum(int(r[-1]) for r in got if r[0] == 0)
    if bad:
        raise ValueError(f"ranking_metrics: {bad} rows with a null label or a null or NaN score p")
    out = []
    for i, lv, n, cases, sq, roc, pr, _ in got:
        one_outcome = cases == 0 or cases == n
        out.append(
            {
                "group": names[i],
                "level": str(lv),
                "n": int(n),
                "cases": int(cases),
                "auroc": None if one_outcome else float(roc),
                "auprc": None if one_outcome else float(pr),
                "brier": float(sq) / n,
            }
        )
    return out


def curves(df: DataFrame, n_bins: int = 1000) -> dict[str, np.ndarray]:
    """ROC and PR curve points from per-bin positive/negative counts (score bins of 1/n_bins)."""
    rows = (
        df.groupBy(F.least(F.floor(F.col("p") * n_bins), F.lit(n_bins - 1)).alias("b"))
        .agg(F.sum("label").alias("pos"), F.sum(1 - F.col("label")).alias("neg"))
        .collect()
    )
    b = np.zeros((n_bins, 2))
    for r in rows:
        b[int(r["b"])] = (r["pos"], r["neg"])
    tp, fp = np.cumsum(b[::-1, 0]), np.cumsum(b[::-1, 1])
    P, N = max(tp[-1], 1), max(fp[-1], 1)
    tpr, fpr = np.concatenate([[0], tp / P]), np.concatenate([[0], fp / N])
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {"fpr": fpr, "tpr": tpr, "recall": tp / P, "precision": precision}


def evaluate(scored: DataFrame) -> dict[str, Any]:
    """Held-out metrics of a scored DataFrame (label, p): AUROC and AUPRC (``ranking_metrics``),
    Brier score, prevalence, n, and the calibration's slope, intercept and curve."""
    d = scored.select(F.col("label").cast("int").alias("label"), "p").cache()
    from omicslake.ml.risk import calibration_metrics

    cal = calibration_metrics(d)
    (whole,) = ranking_metrics(d, {"all": F.lit("all")})
    out = {
        "auroc": whole["auroc"],
        "auprc": whole["auprc"],
        "brier": whole["brier"],
        "prevalence": whole["cases"] / whole["n"],
        "n": whole["n"],
        "mean_risk": cal["mean_risk"],
        "calibration_slope": cal["slope"],
        "calibration_intercept": cal["intercept"],
        "calibration_curve": cal["curve"],
    }
    d.unpersist()
    return out


def age_band(col: str = "age_at_index") -> Column:
    """'<45', '45-64' or '65+' from an age column in years; 'unknown' where it is null."""
    a = F.col(col)
    return F.when(a < 45, "<45").when(a < 65, "45-64").when(a.isNotNull(), "65+").otherwise("unknown")


def subgroups(scored: DataFrame, columns: dict[str, Column]) -> list[dict[str, Any]]:
    """AUROC, AUPRC, Brier and n by the levels of each subgroup column (``ranking_metrics``)."""
    return ranking_metrics(scored, columns)


def importances(model: PipelineModel) -> list[tuple[str, float]]:
    """(feature, coefficient or importance), largest magnitude first; names from ``slot_names``."""
    last = model.stages[-1]
    values = np.asarray(
        last.coefficients.toArray() if hasattr(last, "coefficients") else last.featureImportances.toArray()
    )
    expanded = slot_names(model, len(values))
    pairs = [(expanded[i], float(values[i])) for i in range(len(values))]
    return sorted(pairs, key=lambda t: -abs(t[1]) if not math.isnan(t[1]) else 0.0)


def slot_names(model: PipelineModel, size: int) -> list[str]:
    """The names of the ``size`` slots of a fitted ``preprocessing``'s features vector, from the
    assembler's input columns (one-hot levels as column=level, the kept invalid level 'other');
    slot_<i> for slots beyond them when the sizes disagree."""
    asm = next(s for s in model.stages if type(s).__name__ == "VectorAssembler")
    names = [c.replace("__imp", "") for c in asm.getInputCols()]
    # one-hot columns expand to several slots: take names from the fitted encoders' sizes
    expanded: list[str] = []
    sizes: dict[str, int] = {}
    indexers = [s for s in model.stages if type(s).__name__ == "StringIndexerModel"]
    labels: dict[str, list[str]] = {}
    for ix in indexers:
        for col, lab in zip(ix.getOutputCols(), ix.labelsArray, strict=True):
            labels[col.replace("__idx", "__oh")] = list(lab)
    for enc in [s for s in model.stages if type(s).__name__ == "OneHotEncoderModel"]:
        for col, n_slots in zip(enc.getOutputCols(), enc.categorySizes, strict=True):
            sizes[col] = int(n_slots)  # dropLast + handleInvalid keep: n_slots slots
    for n in asm.getInputCols():
        if n in sizes:
            labs = labels.get(n, [])
            for i in range(sizes[n]):
                expanded.append(f"{n.replace('__oh', '')}={labs[i] if i < len(labs) else 'other'}")
        else:
            expanded.append(n.replace("__imp", ""))
    if len(expanded) != size:
        expanded = names + [f"slot_{i}" for i in range(size - len(names))]
    return expanded
