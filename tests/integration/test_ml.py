"""train and score on the messy cohort's gold features: MLflow run, registry, held-out metrics
against the planted oracle and scikit-learn, reproduction from a run id, idempotent scoring."""

from __future__ import annotations

import csv
import hmac
import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lake_copy import copy_lake
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import RunResult, execute

GRID = {"regParam": [0.03, 0.3]}  # a choice to make, in two points (3 folds each: issue 20's budget)
PLANTED = [
    "lab_hba1c_*",
    "lab_bmi_*",
    "lab_glucose_*",
    "lab_weight_*",
    "age_at_index",
    "age_90_plus",
    "race",
    "prs",
    "pc*",
    "has_genome",
]


@pytest.fixture(scope="module")
def trained(spark: SparkSession, gold_lake: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """train on a copy of the session's gold lake: this module's models, scores, survival and
    cluster tables and MLflow runs stay out of the lake the EHR tests read."""
    root = copy_lake(gold_lake.lake_root, tmp_path_factory.mktemp("ml") / "lake")
    cfg = gold_lake.replace(**{"lake.root": str(root), "jobs.train.grid": GRID})
    run = execute(spark, cfg, "train", run_id="t1")
    assert run.status == "succeeded", run.metrics
    return {"cfg": cfg, "run": run}


def own_lake(trained: dict[str, Any], tmp_path: Path) -> Config:
    """The trained lake copied for a test that changes it (a train run of its own, deleted rows),
    so that the tests after it see the module's lake as the fixture left it."""
    cfg: Config = trained["cfg"]
    return cfg.replace(**{"lake.root": str(copy_lake(cfg.lake_root, tmp_path / "lake"))})


@pytest.fixture(autouse=True)
def _tracking(trained: dict[str, Any]) -> None:
    """MLflow's tracking URI is process-wide: every test starts on the trained lake's store."""
    from omicslake.ml.tracking import setup

    setup(trained["cfg"])


def _truth(landing: Path) -> dict[str, dict[str, str]]:
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    with (landing / "truth" / "patients.csv").open(newline="") as f:
        return {
            hmac.new(key, ("person\x1f" + r["patient_id"]).encode(), sha256).hexdigest(): r for r in csv.DictReader(f)
        }


def test_train_is_tracked_and_registered(spark: SparkSession, trained: dict[str, Any]) -> None:
    import mlflow

    m = trained["run"].metrics
    client = mlflow.MlflowClient()
    run = client.get_run(m["mlflow_run_id"])
    assert run.data.params["model"] == "logistic" and run.data.params["table"] == "gold.features_t2d_incident"
    assert float(run.data.metrics["test_auroc"]) == pytest.approx(m["test_auroc"], abs=1e-4)
    for k in ("test_auprc", "test_brier", "test_calibration_slope", "test_calibration_intercept", "validation_auroc"):
        assert k in run.data.metrics
    ds = run.inputs.dataset_inputs[0].dataset
    source = json.loads(ds.source)
    lake = Lake(spark, trained["cfg"])
    # MLflow's DeltaDatasetSource drops version 0 (falsy); the run's table_version param always has it
    assert source["path"] == lake.location("gold.features_t2d_incident") == str(lake.path("gold.features_t2d_incident"))
    assert int(source.get("delta_table_version", 0)) == m["table_version"] == int(run.data.params["table_version"])
    # the dataset's profile is the table's exact row count (not MLflow's approximate count through Python)
    n_rows = lake.read("gold.features_t2d_incident", version=m["table_version"]).count()
    assert json.loads(ds.profile) == {"num_rows": n_rows}
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert arts == {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/feature_weights.png"}
    subs = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="metrics/subgroups.json")
        ).read_text()
    )
    assert {s["group"] for s in subs} == {"sex", "age_band", "race"} and sum(
        s["n"] for s in subs if s["group"] == "sex"
    ) == m["test_n"]
    mv = client.get_model_version_by_alias(m["registered_model"], "champion")
    assert int(mv.version) == m["model_version"] and mv.run_id == run.info.run_id
    # the model's input example is synthetic (medians), not a patient's row; no person_key in the signature
    model_info = mlflow.models.get_model_info(f"models:/{m['registered_model']}/{mv.version}")
    assert "person_key" not in {c.name for c in model_info.signature.inputs}


def test_auroc_beats_chance_and_the_model_without_planted_features(
    spark: SparkSession, trained: dict[str, Any], messy: Any, tmp_path: Path
) -> None:
    """A smoke check against trivial baselines, not an oracle check: at 1,500 patients the held-out
    split has about 30 cases (an AUROC's standard error is about 0.05), too few to test the
    issue's bar of 0.03 below the oracle. That comparison is tests/integration/test_ml_oracle.py:
    20,000 patients, ~385 held-out cases, a paired DeLong test on the same persons, a fixed bar."""
    m = trained["run"].metrics
    cfg = trained["cfg"]
    lake = Lake(spark, cfg)
    from omicslake.ml.model import split_column

    features = lake.read("gold.features_t2d_incident", version=m["table_version"])
    held_out = split_column(cfg.jobs.train.seed, cfg.jobs.train.test_fraction) == "test"
    test = features.where(held_out).select("person_key", "label").collect()
    truth = _truth(messy[0])
    from sklearn.metrics import roc_auc_score

    oracle = roc_auc_score([r.label for r in test], [float(truth[r.person_key]["p_t2d"] or 0) for r in test])
    mine = own_lake(trained, tmp_path)  # a train run of its own: another model version, another MLflow run
    # at the regularisation the first run chose (one fit, no folds: the features are what differs)
    without = mine.replace(
        **{
            "jobs.train.exclude": [*cfg.jobs.train.exclude, *PLANTED],
            "jobs.train.alias": None,
            "jobs.train.grid": {k: [v] for k, v in m["best_params"].items()},
        }
    )
    worse = execute(spark, without, "train", run_id="t2")
    cases = sum(r.label for r in test)
    # Hanley & McNeil (1982) standard error of our AUROC
    a, n1, n0 = m["test_auroc"], cases, len(test) - cases
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = float(np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)))
    print(
        f"held-out AUROC {a:.3f} (SE {se:.3f}, n={len(test)}, {cases} cases); without the planted features "
        f"{worse.metrics['test_auroc']:.3f}; the oracle on the same persons {oracle:.3f} (for information "
        "only: test_ml_oracle.py compares with the oracle)"
    )
    assert a - 2 * se > 0.5  # better than a constant score (chance) by two standard errors
    assert worse.metrics["test_auroc"] < a - 0.1  # the planted features carry the signal


def test_sklearn_logistic_regression_agrees(spark: SparkSession, trained: dict[str, Any]) -> None:
    """The same features, split, imputation, scaling, class weights and L2 penalty in scikit-learn."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from omicslake.ml.model import feature_columns, split_column

    m, cfg = trained["run"].metrics, trained["cfg"]
    lake = Lake(spark, cfg)
    df = lake.read("gold.features_t2d_incident", version=m["table_version"])
    cols = feature_columns(df, cfg.jobs.train.include, cfg.jobs.train.exclude)
    c = cfg.jobs.train
    pdf = (
        df.withColumn(
            "split", split_column(c.seed, c.test_fraction, c.calibration_fraction if c.calibration != "none" else 0.0)
        )
        .select("label", "split", *cols.numeric, *cols.categorical)
        .toPandas()
    )  # a few hundred rows
    import pandas as pd

    x = pdf[list(cols.numeric)].astype(float)
    train = (pdf["split"] == "train").to_numpy()
    x = x.loc[:, x[train].notna().any()]  # as ours: columns without a value in the training split are left out
    # Spark's Imputer takes the median as approxQuantile(0.5): the value at rank ceil(n/2), the lower
    # of the two middle values when n is even (exact at these sizes); pandas' median averages them.
    x = x.fillna(x[train].apply(lambda c: np.percentile(c.dropna(), 50, method="inverted_cdf")))
    x = pd.concat([x, pd.get_dummies(pdf[list(cols.categorical)].fillna("NA"), dtype=float)], axis=1)
    mu, sd = x[train].mean(), x[train].std(ddof=1).replace(0, 1)
    z = ((x - mu) / sd).to_numpy()
    y = pdf["label"].to_numpy().astype(int)
    lam = float(m["best_params"]["regParam"])
    n = int(train.sum())
    # MLlib minimises mean(w * loss) + regParam / 2 * |b|^2 with sum(w) = n (balanced weights), so
    # C = 1 / (regParam * n). tol: scikit-learn's default (1e-4) stops before the optimum (measured:
    # AUROC 0.0004 off MLlib on the cluster test's lake; at 1e-10 equal and every coefficient within 3e-4).
    clf = LogisticRegression(
        C=1.0 / (lam * n) if lam > 0 else np.inf, class_weight="balanced", max_iter=20000, tol=1e-10
    )
    clf.fit(z[train], y[train])
    ours = m["test_auroc"]
    test = (pdf["split"] == "test").to_numpy()  # not the calibration split, which is neither
    theirs = roc_auc_score(y[test], clf.predict_proba(z[test])[:, 1])
    print(f"AUROC MLlib {ours:.5f}, scikit-learn {theirs:.5f} (regParam {lam})")
    assert abs(ours - theirs) <= 0.002


def test_reproduce_from_the_run_id_alone(spark: SparkSession, trained: dict[str, Any], tmp_path: Path) -> None:
    import mlflow

    m = trained["run"].metrics
    run = mlflow.MlflowClient().get_run(m["mlflow_run_id"])
    cfg = own_lake(trained, tmp_path)  # rows are deleted below: the other tests keep the table as train read it
    # the table moves on (rows deleted: a new Delta version) ...
    lake = Lake(spark, cfg)
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, str(lake.path("gold.features_t2d_incident"))).delete("label = 1 AND age_at_index < 50")
    assert lake.version("gold.features_t2d_incident") > m["table_version"]
    # ... and the run's logged dataset version and parameters rebuild the same model
    p = run.data.params
    source = json.loads(run.inputs.dataset_inputs[0].dataset.source)
    again = execute(
        spark,
        cfg.replace(
            **{
                "jobs.train.input_version": int(source.get("delta_table_version", p["table_version"])),
                "jobs.train.seed": int(p["seed"]),
                "jobs.train.model": p["model"],
                "jobs.train.grid": json.loads(p["grid"]),
                "jobs.train.exclude": json.loads(p["exclude"]),
                "jobs.train.include": json.loads(p["include"]),
                "jobs.train.test_fraction": float(p["test_fraction"]),
                "jobs.train.alias": None,
            }
        ),
        "train",
        run_id="t3",
    )
    for k in ("test_auroc", "test_auprc", "test_brier", "n_train", "n_test"):
        assert again.metrics[k] == pytest.approx(m[k], abs=1e-9), k


def test_score_writes_predictions_once_per_model_version_and_snapshot(
    spark: SparkSession, trained: dict[str, Any]
) -> None:
    cfg = trained["cfg"]
    lake = Lake(spark, cfg)
    first: RunResult = execute(spark, cfg, "score", run_id="s1")
    name = trained["run"].metrics["registered_model"]
    target = f"gold.predictions_{name}"
    v = lake.version(target)
    n = lake.read("gold.features_t2d_incident").count()
    assert first.metrics["scored"] == n and lake.read(target).count() == n
    again = execute(spark, cfg, "score", run_id="s2")
    assert again.metrics["scored"] == 0 and lake.version(target) == v
    row = lake.read(target).where(F.col("risk").isNull() | (F.col("risk") < 0) | (F.col("risk") > 1)).count()
    assert row == 0
    assert set(lake.read(target).columns) >= {
        "person_key",
        "risk",
        "risk_band",
        "model_score",
        "reasons",
        "contributions",
        "label",
        "model_name",
        "model_version",
        "scored_at",
        "input_version",
    }


def test_predictions_are_recalibrated_risks_with_reasons_that_add_up(
    spark: SparkSession, trained: dict[str, Any]
) -> None:
    """The calibration stored with the model is statsmodels' logistic regression of the outcome on
    logit(model output) over the calibration split; each prediction's risk is that map applied to
    its model output, its band follows the thresholds, and its contributions add up to MLlib's
    logit minus the intercept (every patient); the reasons are the top-k contributions in words."""
    import statsmodels.api as sm

    from omicslake.ml.model import split_column
    from omicslake.ml.tracking import risk_metadata

    cfg, m = trained["cfg"], trained["run"].metrics
    c = cfg.jobs.train
    lake = Lake(spark, cfg)
    target = f"gold.predictions_{m['registered_model']}"
    if not lake.exists(target):
        execute(spark, cfg, "score", run_id="s3")
    meta = risk_metadata(m["registered_model"], m["model_version"])
    cal, lin = meta["calibration"], meta["linear"]
    assert cal["method"] == c.calibration == "platt"
    preds = (
        lake.read(target)
        .where(F.col("model_version") == m["model_version"])
        .withColumn("split", split_column(c.seed, c.test_fraction, c.calibration_fraction))
        .toPandas()
    )
    fit = preds[preds["split"] == "calibration"]
    assert len(fit) == cal["n"] and len(fit) > 100
    lp = np.log(fit["model_score"] / (1 - fit["model_score"]))
    glm = sm.GLM(fit["label"], sm.add_constant(lp.to_numpy()), family=sm.families.Binomial()).fit()
    assert (cal["a"], cal["b"]) == pytest.approx(tuple(glm.params), abs=1e-5)
    all_lp = np.log(preds["model_score"] / (1 - preds["model_score"])).to_numpy()
    assert np.max(np.abs(glm.predict(sm.add_constant(all_lp)) - preds["risk"])) < 1e-5
    t, names = cfg.jobs.score.band_thresholds, cfg.jobs.score.band_names
    expected_band = np.where(preds["risk"] < t[0], names[0], np.where(preds["risk"] < t[1], names[1], names[2]))
    assert (preds["risk_band"].to_numpy() == expected_band).all()
    # contributions add up to MLlib's own logit of its output (up to the intercept), for every patient
    sums = preds["contributions"].map(lambda d: sum(dict(d).values())).to_numpy()
    gap = np.abs(lin["intercept"] + sums - all_lp)
    assert gap.max() < 1e-9, f"{int((gap >= 1e-9).sum())} patients' contributions do not add up (max {gap.max():.2e})"
    k = cfg.jobs.score.top_k
    for reasons, contrib in zip(preds["reasons"], preds["contributions"], strict=True):
        d = dict(contrib)
        top = sorted(d.values(), key=abs, reverse=True)[:k]
        assert [r["contribution"] for r in reasons] == pytest.approx(top, abs=1e-12)
        for r in reasons:
            assert r["text"].endswith("raises risk" if r["contribution"] > 0 else "lowers risk") and r["direction"] in (
                "raises",
                "lowers",
            )
    hba1c = [
        r for rs in preds["reasons"] for r in rs if r["feature"] == "lab_hba1c_last_1095d" and r["value"] is not None
    ]
    assert hba1c, "HbA1c (the strongest planted feature) is nobody's top reason"
    r = hba1c[0]
    assert r["text"].startswith(f"HbA1c (last, 3 y) {r['value']:.3g} % (cohort median {r['reference']:.3g} %)")
    print("e.g.:", "; ".join(x["text"] for x in preds["reasons"][preds["risk"].idxmax()]))


def test_survival_aft_agrees_with_lifelines_and_ranks_held_out_patients(
    spark: SparkSession, trained: dict[str, Any]
) -> None:
    """AFT on a few planted features: coefficients and scale equal lifelines' WeibullAFTFitter on
    the same scaled vectors; held-out C-index equals lifelines' and beats chance clearly."""
    import mlflow
    from lifelines import WeibullAFTFitter
    from lifelines.utils import concordance_index
    from pyspark.ml.functions import vector_to_array

    from omicslake.ml.model import split_column

    few = ["age_at_index", "lab_hba1c_last_1095d", "lab_bmi_last_1095d", "lab_glucose_last_1095d", "female"]
    cfg = trained["cfg"].replace(**{"jobs.survival.include": few, "jobs.survival.model": "aft"})
    run = execute(spark, cfg, "survival", run_id="s1")
    assert run.status == "succeeded", run.metrics
    m = run.metrics
    lake = Lake(spark, cfg)
    out = lake.read("gold.survival_t2d_incident")
    assert out.count() == lake.read("gold.features_t2d_incident").count() == m["n_train"] + m["n_test"]
    assert out.select("person_key").distinct().count() == out.count()
    assert m["test_c_index"] > 0.65, m  # planted risk factors rank who gets T2D first
    model = mlflow.spark.load_model(f"models:/{m['registered_model']}/{m['model_version']}")
    feats = (
        lake.read("gold.features_t2d_incident")
        .drop("time_days", "event")
        .join(lake.read("gold.cohort_t2d_incident").select("person_key", "time_days", "event"), "person_key")
    )
    rows = (
        model.transform(
            feats.withColumn("time", F.greatest(F.col("time_days").cast("double"), F.lit(0.5))).withColumn(
                "event", F.col("event").cast("double")
            )
        )
        .select(
            split_column(7, 0.3).alias("split"),
            vector_to_array("features").alias("x"),
            "time",
            "event",
            "predicted_time",
        )
        .collect()
    )
    import pandas as pd

    asm = next(s for s in model.stages if type(s).__name__ == "VectorAssembler")
    order = [c.replace("__imp", "") for c in asm.getInputCols()]  # the vector's slots, in the table's column order
    assert sorted(order) == sorted(few)
    train = pd.DataFrame(
        [list(r.x) + [r.time, r.event] for r in rows if r.split == "train"], columns=[*order, "T", "E"]
    )
    aft = WeibullAFTFitter().fit(train, "T", "E")
    ours = {
        c: v
        for c, v in mlflow.artifacts.load_dict(f"runs:/{m['mlflow_run_id']}/metrics/coefficients.json")["coefficients"]
    }
    for c in few:
        assert ours[c] == pytest.approx(aft.params_["lambda_"][c], abs=2e-3), c
    assert m["scale"] == pytest.approx(1 / np.exp(aft.params_["rho_"]["Intercept"]), rel=2e-3)
    test = [r for r in rows if r.split == "test"]
    lifelines_c = concordance_index([r.time for r in test], [r.predicted_time for r in test], [r.event for r in test])
    # the job's C before its summary rounds it to 4 decimals (MLflow has it whole): the rounding alone
    # took up half the tolerance, which is for scores closer than the concordance's bins (ml/survival.py)
    whole = mlflow.MlflowClient().get_run(m["mlflow_run_id"]).data.metrics["test_c_index"]
    assert round(whole, 4) == m["test_c_index"]
    assert whole == pytest.approx(lifelines_c, abs=1e-4)


def test_survival_cox_agrees_with_lifelines_and_is_calibrated_at_the_horizon(
    spark: SparkSession, trained: dict[str, Any]
) -> None:
    """The default survival model, penalised Cox: coefficients equal lifelines' CoxPHFitter with the
    same penalizer on the same scaled training vectors, the held-out C-index equals lifelines', each
    person's predicted risk by the horizon equals lifelines' predicted survival, the calibration
    table's observed risks equal lifelines' Kaplan-Meier per decile; the model loads from the registry
    and reproduces the table's scores."""
    import mlflow
    import pandas as pd
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.utils import concordance_index
    from pyspark.ml.functions import vector_to_array

    few = ["age_at_index", "lab_hba1c_last_1095d", "lab_bmi_last_1095d", "lab_glucose_last_1095d", "female"]
    pen = 0.02
    cfg = trained["cfg"].replace(**{"jobs.survival.include": few, "jobs.survival.penalizer": pen})
    run = execute(spark, cfg, "survival", run_id="s2")
    assert run.status == "succeeded", run.metrics
    m = run.metrics
    assert m["model"] == "cox" and m["registered_model"] == "omicslake_t2d_incident_cox" and m["converged"] == 1
    assert m["test_c_index"] > 0.65, m
    h = m["horizon_days"]
    lake = Lake(spark, cfg)
    out = lake.read("gold.survival_t2d_incident").toPandas().set_index("person_key")
    assert len(out) == m["n_train"] + m["n_test"] and (out["horizon_days"] == h).all()
    assert out["log_predicted_time"].isna().all() and out["predicted_risk"].between(0, 1).all()
    model = mlflow.spark.load_model(f"models:/{m['registered_model']}/{m['model_version']}")
    feats = lake.read("gold.features_t2d_incident").drop("time_days", "event")
    scored = model.transform(feats).select("person_key", vector_to_array("features").alias("x"), "lp").toPandas()
    scored = scored.set_index("person_key").join(out)
    assert np.max(np.abs(scored["lp"] - scored["risk_score"])) < 1e-12  # the registered model reproduces the table
    asm = next(s for s in model.stages if type(s).__name__ == "VectorAssembler")
    order = [c.replace("__imp", "") for c in asm.getInputCols()]
    x = pd.DataFrame(scored["x"].tolist(), columns=order, index=scored.index)
    x["T"] = np.maximum(scored["time_days"].astype(float), 0.5)
    x["E"] = scored["event"]
    train, test = x[scored["split"] == "train"], x[scored["split"] == "test"]
    ref = CoxPHFitter(penalizer=pen, l1_ratio=0.0).fit(
        train, "T", "E", fit_options={"precision": 1e-12, "max_steps": 200}
    )
    ours = dict(mlflow.artifacts.load_dict(f"runs:/{m['mlflow_run_id']}/metrics/coefficients.json")["coefficients"])
    d = max(abs(ours[c] - ref.params_[c]) for c in few)
    print(f"[agreement] survival Cox vs lifelines penalizer={pen}: max |d coef| = {d:.2e}")
    assert d < 1e-4
    assert m["test_c_index"] == pytest.approx(
        concordance_index(test["T"], -scored.loc[test.index, "risk_score"], test["E"]), abs=1e-4
    )
    ref_risk = 1 - ref.predict_survival_function(test[order], times=[h]).T.iloc[:, 0]
    rel = np.abs(ref_risk - scored.loc[test.index, "predicted_risk"]) / ref_risk
    print(
        f"[agreement] survival Cox predicted risk vs lifelines: n={rel.notna().sum()} max rel |d| = {rel.max():.2e}, mean risk {ref_risk.mean():.4f}"
    )
    assert rel.notna().sum() == len(test) and rel.max() < 1e-4
    cal = mlflow.artifacts.load_dict(f"runs:/{m['mlflow_run_id']}/metrics/survival_calibration.json")
    assert cal["horizon_days"] == h and len(cal["groups"]) >= 5 and sum(g["n"] for g in cal["groups"]) == m["n_test"]
    risk = scored.loc[test.index, "predicted_risk"].sort_values()
    for g in cal["groups"][:: max(1, len(cal["groups"]) // 3)]:  # a few deciles, each against lifelines' KM
        # the group's members: the g["n"] persons at its rank position in the held-out risk order
        start = sum(q["n"] for q in cal["groups"] if q["group"] < g["group"])
        members = risk.index[start : start + g["n"]]
        assert g["predicted"] == pytest.approx(risk.loc[members].mean(), abs=1e-9)
        km = KaplanMeierFitter().fit(test.loc[members, "T"], test.loc[members, "E"])
        assert g["observed"] == pytest.approx(1 - float(km.survival_function_at_times(h).iloc[0]), abs=1e-9)
    assert abs(m["calibration_predicted"] - m["calibration_observed"]) < 0.05, m


def test_cluster_phenotypes_with_silhouette_equal_to_sklearn(spark: SparkSession, trained: dict[str, Any]) -> None:
    import mlflow
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array
    from sklearn.metrics import silhouette_score

    cfg = trained["cfg"].replace(**{"jobs.cluster.k": [2, 3, 4]})
    run = execute(spark, cfg, "cluster", run_id="c1")
    assert run.status == "succeeded", run.metrics
    m = run.metrics
    lake = Lake(spark, cfg)
    clusters = lake.read("gold.clusters_t2d_incident")
    n = lake.read("gold.features_t2d_incident").count()
    assert clusters.count() == clusters.select("person_key").distinct().count() == n == sum(m["sizes"].values())
    assert m["k"] in (2, 3, 4) and {r.cluster for r in clusters.select("cluster").distinct().collect()} == set(
        range(m["k"])
    )
    prof = lake.read("gold.cluster_profiles_t2d_incident").where("feature = 'age_at_index'").collect()
    assert sum(r.n for r in prof) == n and abs(sum(r.share for r in prof) - 1) < 1e-9
    cases = lake.read("gold.features_t2d_incident").agg(F.sum("label")).first()[0]
    assert sum(r.n * r.outcome_rate for r in prof) == pytest.approx(cases)
    model = mlflow.spark.load_model(f"runs:/{m['mlflow_run_id']}/model")
    x = (
        PipelineModel(stages=model.stages[:-1])
        .transform(lake.read("gold.features_t2d_incident"))
        .select("person_key", vector_to_array("features").alias("x"))
    )
    got = x.join(clusters, "person_key").select("x", "cluster").collect()
    assert silhouette_score(
        np.array([r.x for r in got]), [r.cluster for r in got], metric="sqeuclidean"
    ) == pytest.approx(m["silhouette"], abs=1e-4)


def test_served_risks_equal_batch_scores(spark: SparkSession, trained: dict[str, Any]) -> None:
    """``omicslake serve`` (the documented command, in a child process) on 127.0.0.1: good requests
    answer what the score job wrote for the same patients (risk to 1e-9, band, reasons), bad ones a
    400 naming the field; then it is stopped."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    cfg, m = trained["cfg"], trained["run"].metrics
    lake = Lake(spark, cfg)
    target = f"gold.predictions_{m['registered_model']}"
    if not lake.exists(target):
        execute(spark, cfg, "score", run_id="s4")
    preds = lake.read(target).where(F.col("model_version") == m["model_version"])
    version = preds.select(F.max("input_version")).first()[0]
    features = lake.read("gold.features_t2d_incident", version=version)
    from omicslake.ml.tracking import risk_metadata

    lin = risk_metadata(m["registered_model"], m["model_version"])["linear"]
    names = [*lin["numeric"], *lin["categorical"]]
    rows = features.select("person_key", *names).orderBy("person_key").limit(40).toPandas()
    batch = {
        r.person_key: r
        for r in preds.where(F.col("input_version") == version)
        .join(features.select("person_key").orderBy("person_key").limit(40), "person_key")
        .collect()
    }
    patients = [
        {
            k: (None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v))
            for k, v in rec.items()
        }
        for rec in rows.to_dict(orient="records")
    ]
    cmd = [
        sys.executable,
        "-m",
        "omicslake.jobs.cli",
        "serve",
        "--port",
        "0",
        "--set",
        f"lake.root={cfg.lake_root}",
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "serving" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url = line.split(" on ")[1].strip()
        assert url.startswith("http://127.0.0.1:")

        def post(body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
            req = urllib.request.Request(
                url,
                data=raw if raw is not None else json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, one = post(patients[0])
        assert status == 200 and one["model_version"] == m["model_version"] and one["model"] == m["registered_model"]
        status, many = post({"patients": patients})
        assert status == 200 and len(many["predictions"]) == len(patients)
        for got in many["predictions"]:
            want = batch[got["person_key"]]
            assert abs(got["risk"] - want.risk) < 1e-9 and abs(got["model_score"] - want.model_score) < 1e-9
            assert got["risk_band"] == want.risk_band
            assert [r["text"] for r in got["reasons"]] == [r.text for r in want.reasons]
        assert one["predictions"][0] == many["predictions"][0]
        # bad requests: a 400 that names the field
        hb = "lab_hba1c_last_1095d"
        status, err = post({k: v for k, v in patients[0].items() if k != hb})
        assert status == 400 and hb in err["error"] and "missing" in err["error"]
        status, err = post(patients[0] | {hb: "6.3"})
        assert status == 400 and hb in err["error"] and "number" in err["error"]
        status, err = post(patients[0] | {"ssn": "123-45-6789"})
        assert (
            status == 400 and "unknown field" in err["error"] and "ssn" in err["error"] and "123-45" not in err["error"]
        )
        status, err = post(None, raw=b"{not json")
        assert status == 400 and "not JSON" in err["error"]
        # latency of single requests, throughput of batches of 100 (this shared 2-core machine)
        lat = []
        for i in range(200):
            t0 = time.perf_counter()
            assert post(patients[i % len(patients)])[0] == 200
            lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(10):
            assert post({"patients": (patients * 3)[:100]})[0] == 200
        rate = 1000 / (time.perf_counter() - t0)
        print(
            f"served: single-request latency p50 {np.percentile(lat, 50) * 1e3:.2f} ms, p99 {np.percentile(lat, 99) * 1e3:.2f} ms; "
            f"batches of 100: {rate:.0f} patients/s"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0


def test_risk_page_renders_in_chromium_without_identifiers(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    """The score job's risk page: headless Chromium renders every listed patient sorted by risk with
    the reasons' words and opens a patient's panel (factor chart and labs), without an error; no
    bronze identifier is in the file (phi_scan). The screenshot goes to docs/risk_page.png."""
    import re
    import shutil
    import subprocess

    import phi_scan
    from report_check import probe

    from conftest import require_tool

    exe = require_tool("chromium")
    cfg, m = trained["cfg"], trained["run"].metrics
    lake = Lake(spark, cfg)
    target = f"gold.predictions_{m['registered_model']}"
    if not lake.exists(target):
        execute(spark, cfg, "score", run_id="s5")
    page = cfg.lake_root / "reports" / f"risk_{m['registered_model']}.html"
    assert page.exists()
    preds = (
        lake.read(target)
        .where(F.col("model_version") == m["model_version"])
        .orderBy(F.desc("risk"), "person_key")
        .limit(cfg.jobs.score.page_rows)
        .collect()
    )
    seen = probe(page, tmp_path)
    assert seen["errors"] == 0 and not seen["console"], seen
    dom = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri() + "#p=" + preds[0].person_key,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    keys = re.findall(r'<tr class="row[^"]*" data-k="([0-9a-f]+)"', dom)
    assert keys == [r.person_key for r in preds]  # every patient, highest risk first (ties by key as in the table)
    assert html_text(preds[0].reasons[0].text) in dom
    panel = dom[dom.index('id="panel"') : dom.index("<script")]  # the rendered panel, not the script's templates
    assert 'aria-label="factor chart"' in panel and "Recent labs" in panel and preds[0].person_key[:12] in panel
    assert re.search(r'aria-label="[^"]+ over time"', panel), "no lab chart in the panel of the highest-risk patient"
    ids = phi_scan.identifiers(phi_scan.synthea_identifiers(Lake(spark, cfg).read("bronze.synthea_patients")))
    text = spark.createDataFrame([(page.read_text(),)], "page string")
    assert phi_scan.scan(text, ids) == {}
    shot = tmp_path / "risk_page.png"
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--virtual-time-budget=5000",
            f"--screenshot={shot}",
            page.as_uri() + "#p=" + preds[0].person_key,
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    if os.environ.get("OMICSLAKE_WRITE_DOCS"):  # refresh docs/risk_page.png
        shutil.copyfile(shot, Path(__file__).resolve().parents[2] / "docs" / "risk_page.png")


def html_text(s: str) -> str:
    import html

    return html.escape(s, quote=False)
