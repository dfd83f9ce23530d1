"""Benchmark: the train job's MLlib models against scikit-learn and LightGBM, one gold table, one split.

The gold table is synthetic but of the real schema: every column ``build_cohort`` writes for the
t2d_incident cohort under ``conf/features/default.yaml`` (labs x windows x statistics, condition,
Charlson, drug and visit counts, demographics, genetic PCs and PRS where a genome is linked),
written through ``Lake.write`` (so the contract ``gold.features_{cohort}`` holds), with a planted
outcome: a logistic risk of age, HbA1c, glucose, BMI, prediabetes, hypertension and the PRS, plus
an interaction and a threshold (so that trees have something lines miss). Labs are missing
for a third of the patients, as they are in the EHR.

Both sides get the same rows: the split is the train job's (``ml.model.split_column``: a seeded hash
of person_key, 30 % test), the features are the train job's (``feature_columns`` with its default
excludes, ``drop_empty``), the class weights are its balanced weights. MLlib fits the train job's
pipeline (``ml.model.pipeline``: median imputation, one-hot, scaling, the classifier) at one fixed
point of its grid; scikit-learn fits the same preprocessing (median imputation, one-hot, scaling)
and the same objective (logistic: the L2 penalty regParam as C = 1 / (regParam * sum of weights);
GBT: the same number of trees, depth, learning rate and bins). Timed: the fit only, on data already
in memory on each side (Spark: the cached training split; scikit-learn: a pandas frame of the same
rows). Held-out AUROC of every model is computed by one function (scikit-learn's roc_auc_score) on
each model's test predictions, and MLlib's own evaluator is recorded beside it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Timer, ratio

TEST_FRACTION = 0.3
LOGISTIC = {"regParam": 0.01, "elasticNetParam": 0.0}  # a point of the train job's logistic grid
GBT = {"maxIter": 30, "maxDepth": 5, "stepSize": 0.1, "maxBins": 32}  # maxIter/maxDepth: a point of its gbt grid


def feature_names(cohort: str = "t2d_incident") -> dict[str, list[str]]:
    """The feature columns build_cohort writes for ``cohort`` (conf/cohorts, conf/features), by family."""
    from omicslake.features.patient import _safe
    from omicslake.features.spec import load_cohort

    spec = load_cohort(cohort).features
    labs = [f"lab_{_safe(lab)}_{stat}_{w}d" for lab in spec.labs for w in spec.lab_windows for stat in spec.lab_stats]
    return {
        "cond": [f"cond_{_safe(g)}" for g in spec.condition_groups],
        "charlson": [f"charlson_{_safe(g)}" for g in spec.charlson],
        "lab": labs,
        "drug": [f"drug_{_safe(c)}_count_{spec.drug_window}d" for c in spec.drug_classes],
        "visits": [f"visits_{_safe(c)}_{spec.utilisation_window}d" for c in spec.visit_classes]
        + [f"visits_all_{spec.utilisation_window}d"],
        "genetics": [f"pc{i}" for i in range(1, spec.n_pcs + 1)] + ["prs"] if spec.genetics else [],
    }


def synthetic_gold(n: int, seed: int) -> Any:
    """A pandas frame of ``n`` patients with the columns of gold.features_t2d_incident and a planted
    label (about 12 % positive)."""
    import pandas as pd

    from omicslake.features.spec import load_cohort

    rng = np.random.default_rng(seed)
    names = feature_names()
    cols: dict[str, Any] = {}
    cols["person_key"] = [f"p{i:09d}" for i in range(n)]
    cols["index_date"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D")
    age = np.clip(rng.normal(52, 14, n), 18, 95).round(2)
    cols["age_at_index"] = age
    cols["age_90_plus"] = (age >= 90).astype("int32")
    cols["female"] = rng.integers(0, 2, n).astype("int32")
    cols["race"] = rng.choice(["white", "black", "asian", "hispanic", "other"], n, p=[0.6, 0.13, 0.07, 0.15, 0.05])
    cols["ethnicity"] = rng.choice(["nonhispanic", "hispanic"], n, p=[0.85, 0.15])
    bmi_true = np.clip(rng.normal(28, 5.5, n), 15, 60)
    hba1c_true = np.clip(rng.normal(5.6, 0.5, n) + 0.03 * (bmi_true - 28), 4, 12)
    glucose_true = np.clip(18 * hba1c_true - 5 + rng.normal(0, 8, n), 50, 400)
    latent = {
        "hba1c": hba1c_true,
        "glucose": glucose_true,
        "bmi": bmi_true,
        "weight": bmi_true * 2.9,
        "sbp": rng.normal(128, 15, n),
        "dbp": rng.normal(80, 9, n),
        "cholesterol_total": rng.normal(195, 35, n),
        "cholesterol_hdl": rng.normal(52, 12, n),
        "cholesterol_ldl": rng.normal(115, 30, n),
        "triglycerides": rng.lognormal(4.9, 0.4, n),
        "creatinine": rng.lognormal(-0.1, 0.25, n),
    }
    has_labs = rng.random(n) > 1 / 3
    for name in names["lab"]:
        _, lab_and_rest = name.split("_", 1)
        lab = next(k for k in sorted(latent, key=len, reverse=True) if lab_and_rest.startswith(k + "_"))
        stat = lab_and_rest[len(lab) + 1 :].rsplit("_", 1)[0]
        base = latent[lab]
        sd = 0.05 * np.abs(base).mean()
        window_has = has_labs & (rng.random(n) > (0.1 if name.endswith("1095d") else 0.3))
        value = {
            "last": base + rng.normal(0, sd, n),
            "mean": base + rng.normal(0, sd / 2, n),
            "min": base - np.abs(rng.normal(sd, sd / 2, n)),
            "max": base + np.abs(rng.normal(sd, sd / 2, n)),
            "slope": rng.normal(0, sd / 3, n),
            "count": rng.poisson(3, n) + 1.0,
        }[stat]
        if stat == "count":
            cols[name] = np.where(window_has, value, 0).astype("int64")
        else:
            cols[name] = np.where(window_has, value.round(3), np.nan)
    share = {"cond_hypertension": 0.3, "cond_prediabetes": 0.12, "cond_t2d": 0.0, "cond_obesity": 0.25}
    for c in names["cond"]:
        cols[c] = (rng.random(n) < share.get(c, 0.1)).astype("int32")
    spec = load_cohort("t2d_incident").features
    cols["charlson_index"] = np.zeros(n, dtype="int32")
    for g, c in zip(spec.charlson, names["charlson"], strict=True):
        cols[c] = (rng.random(n) < 0.05).astype("int32")
        cols["charlson_index"] += cols[c] * spec.charlson[g].weight
    cols["has_genome"] = (rng.random(n) < 0.3).astype("int32")
    for c in names["drug"]:
        cols[c] = rng.poisson(0.4, n).astype("int64")
    for c in names["visits"]:
        cols[c] = rng.poisson(2.0, n).astype("int64")
    prs = rng.normal(0, 1, n)
    for c in names["genetics"]:
        v = prs if c == "prs" else rng.normal(0, 1, n)
        cols[c] = np.where(cols["has_genome"] == 1, v.round(5), np.nan)
    prediabetes = cols.get("cond_prediabetes", np.zeros(n))
    hypertension = cols.get("cond_hypertension", np.zeros(n))
    z = (
        -3.2
        + 0.03 * (age - 52)
        + 0.9 * (hba1c_true - 5.6)
        + 0.012 * (glucose_true - 95)
        + 0.06 * (bmi_true - 28)
        + 0.8 * prediabetes
        + 0.3 * hypertension
        + 0.35 * prs
        + 1.2 * (hba1c_true > 6.2)  # a threshold
        + 0.05 * (bmi_true - 28) * prediabetes  # an interaction
    )
    label = rng.random(n) < 1 / (1 + np.exp(-z))
    cols["label"] = label.astype("int32")
    cols["time_days"] = np.where(label, rng.integers(30, 365, n), 365).astype("int32")
    cols["event"] = label
    cols["run_id"] = "bench-models"
    frame = pd.DataFrame(cols)
    frame["index_date"] = frame["index_date"].dt.date
    return frame


def _gold_table(spark: Any, cfg: Any, work: Path, n: int, seed: int) -> tuple[Any, str]:
    """The synthetic table written to and read back from the lake (the contract enforced on write)."""
    from omicslake.io.delta import Lake

    lake = Lake(spark, cfg.replace(**{"lake.root": str(work / "models-lake")}), run_id=f"bench-models-{n}")
    table = f"gold.features_bench{n}"
    if not lake.exists(table):
        frame = synthetic_gold(n, seed)
        key = "spark.sql.execution.arrow.pyspark.enabled"
        before = spark.conf.get(key, "false")
        spark.conf.set(key, "true")  # pandas -> Spark through Arrow (row by row: minutes at 100,000 x 170)
        try:
            lake.write(spark.createDataFrame(frame).repartition(4), table, mode="overwrite")
        finally:
            spark.conf.set(key, before)
    return lake.read(table), table


def _sk_preprocess(numeric: list[str], categorical: list[str], scale: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = (
        make_pipeline(SimpleImputer(strategy="median"), StandardScaler()) if scale else SimpleImputer(strategy="median")
    )
    parts = [("num", num, numeric)]
    if categorical:
        cat = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
        )
        parts.append(("cat", cat, categorical))
    return ColumnTransformer(parts, sparse_threshold=0.0)


def run(spark: Any, cfg: Any, work: Path, rows: int, seed: int = 7, peers: bool = True) -> dict[str, Any]:
    """Fit times and held-out AUROC of MLlib vs scikit-learn / LightGBM at one table size (a dict for the JSON)."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F
    from sklearn.metrics import roc_auc_score

    from omicslake.config import TrainConfig
    from omicslake.ml import model as M

    timer = Timer()
    with timer("generate_table"):
        df, table = _gold_table(spark, cfg, work, rows, seed)
    exclude = TrainConfig().exclude
    cols = M.feature_columns(df, ("*",), exclude)
    data = df.withColumn("split", M.split_column(seed, TEST_FRACTION, 0.0)).withColumn(
        "label", F.col("label").cast("double")
    )
    cols, empty = M.drop_empty(data.where("split = 'train'"), cols)
    train = M.with_class_weights(data.where("split = 'train'"), True).cache()
    test = data.where("split = 'test'").withColumn("_w", F.lit(1.0)).cache()
    n_train, n_test = train.count(), test.count()
    label_test = None
    auroc: dict[str, float | None] = {}
    mllib_auroc: dict[str, float] = {}
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="p", metricName="areaUnderROC")
    test_keys = None
    for kind, params in (("logistic", LOGISTIC), ("gbt", GBT)):
        pipe, est = M.pipeline(cols, kind, seed)
        pipe = pipe.copy({est.getParam(k): v for k, v in params.items()})
        t = time.monotonic()
        fitted = pipe.fit(train)
        timer.seconds[f"mllib_{kind}"] = round(time.monotonic() - t, 3)
        scored = M.scores(fitted, test).select("person_key", "label", "p").cache()
        mllib_auroc[kind] = round(float(evaluator.evaluate(scored)), 4)
        pred = scored.orderBy("person_key").toPandas()  # one probability per test patient
        scored.unpersist()
        test_keys = pred["person_key"].to_numpy()
        label_test = pred["label"].to_numpy()
        auroc[f"mllib_{kind}"] = round(float(roc_auc_score(label_test, pred["p"])), 4)
    record: dict[str, Any] = {
        "inputs": {
            "table": table,
            "rows": rows,
            "seed": seed,
            "synthetic": "the columns of gold.features_t2d_incident (conf/features/default.yaml), planted label",
            "positives": int(df.agg(F.sum("label")).collect()[0][0]),
            "n_train": n_train,
            "n_test": n_test,
            "numeric_features": len(cols.numeric),
            "categorical_features": len(cols.categorical),
            "empty_features_dropped": empty,
            "split": f"ml.model.split_column(seed={seed}, test_fraction={TEST_FRACTION})",
        },
        "params": {
            "logistic": LOGISTIC,
            "gbt": GBT,
            "class_weights": "balanced (the train job's _w)",
            "note": "one fit per model at a fixed point of the train job's grid; the train job itself tunes over the "
            "grid (8 logistic, 4 gbt fits, TrainValidationSplit) and refits the best",
        },
        "mllib_evaluator_auroc": mllib_auroc,
    }
    if peers:
        import lightgbm
        import sklearn
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        features = [*cols.numeric, *cols.categorical]
        tr = train.select(*features, "label", "_w").toPandas()  # the same rows as MLlib's training split
        te = test.select("person_key", *features, "label").toPandas().sort_values("person_key")
        assert (te["person_key"].to_numpy() == test_keys).all()
        y, w = tr["label"].to_numpy(), tr["_w"].to_numpy()
        num, cat = list(cols.numeric), list(cols.categorical)
        c = 1.0 / (LOGISTIC["regParam"] * float(w.sum()))
        models = {
            "sklearn_logistic": make_pipeline(
                _sk_preprocess(num, cat, scale=True), LogisticRegression(C=c, max_iter=200, tol=1e-6)
            ),
            "sklearn_hist_gbt": make_pipeline(
                _sk_preprocess(num, cat, scale=False),
                HistGradientBoostingClassifier(
                    max_iter=GBT["maxIter"],
                    max_depth=GBT["maxDepth"],
                    learning_rate=GBT["stepSize"],
                    max_bins=GBT["maxBins"],
                    early_stopping=False,
                    random_state=seed,
                ),
            ),
            "lightgbm": make_pipeline(
                _sk_preprocess(num, cat, scale=False),
                lightgbm.LGBMClassifier(
                    n_estimators=GBT["maxIter"],
                    max_depth=GBT["maxDepth"],
                    learning_rate=GBT["stepSize"],
                    max_bin=GBT["maxBins"],
                    random_state=seed,
                    verbose=-1,
                ),
            ),
        }
        for name, model in models.items():
            t = time.monotonic()
            model.fit(tr[features], y, **{f"{model.steps[-1][0]}__sample_weight": w})
            timer.seconds[name] = round(time.monotonic() - t, 3)
            auroc[name] = round(float(roc_auc_score(te["label"], model.predict_proba(te[features])[:, 1])), 4)
        record["versions"] = {"scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__}
    train.unpersist()
    test.unpersist()
    s = timer.seconds
    record["auroc"] = auroc
    record["seconds"] = s
    record["ratios"] = {
        "mllib_logistic_vs_sklearn_logistic": ratio(s["mllib_logistic"], s.get("sklearn_logistic")),
        "mllib_gbt_vs_sklearn_hist_gbt": ratio(s["mllib_gbt"], s.get("sklearn_hist_gbt")),
        "mllib_gbt_vs_lightgbm": ratio(s["mllib_gbt"], s.get("lightgbm")),
    }
    return record
