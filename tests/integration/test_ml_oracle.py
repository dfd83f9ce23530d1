"""The default model against the generator's planted truth, on a cohort big enough for the
comparison to mean something (issue 13, item 7).

A generated 20,000-patient cohort (EHR only: no genomes, so the planted genetic term is 0 for
everyone and the oracle uses nothing the EHR does not carry) goes through ingest_ehr,
conform_ehr, build_cohort (t2d_incident only, no Table 1) and train with the default logistic
model. On the SAME held-out persons we score the model's predicted probabilities and the
generator's true probabilities (truth/patients.csv, p_t2d) and compare the two correlated
AUROCs with DeLong's test (DeLong, DeLong & Clarke-Pearson 1988, in the placement-value form of
Sun & Xu 2014), cross-checked with a paired bootstrap. The bar is fixed: held-out AUROC >=
oracle - 0.03. Slow (minutes): it still runs in the default suite and in CI.
"""

from __future__ import annotations

import csv
import hmac
import os
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jit import generated_code
from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

ORACLE_PATIENTS = 20_000
BAR = 0.03  # the bar: held-out AUROC >= oracle AUROC - 0.03, on the same persons
MIN_HELD_OUT_CASES = 300  # at 20,000 patients: ~385 (7 % of ~5,300 held-out persons)
TRUTH = "truth/patients.csv"  # the generator's latent truth, one row per patient
STEPS = ("generate", "ingest_ehr", "conform_ehr", "build_cohort", "train")
# The default model (train.DEFAULT_GRIDS). The former ridge-only default grid (regParam 0.01-0.3,
# elasticNetParam 0) kept all 147 features at ~950 training cases (6.5 events per feature) and
# missed the bar (held-out 0.774 against an oracle of 0.807 here: gap 0.033); with the lasso at the
# same strengths in the default grid, validation picks it (regParam 0.03, L1: 0.782, gap 0.025).
# Chosen by one 80/20 split the choice was the draw's: the same rows in another layout picked the
# ridge (0.776, gap 0.031: failed); 3-fold cross-validation picks the lasso for every seed tried.


@pytest.fixture(scope="module")
def oracle_lake(spark: SparkSession, base_cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 20,000-patient generated EHR cohort through the gold pipeline to a trained default model.

    As cheap as it can be: no genotyped samples (genomics is not under test here), no messy
    extras (no second batch), Synthea CSV only (FHIR not ingested), one cohort, no Table 1."""
    root = tmp_path_factory.mktemp("oracle")
    landing = root / "landing"
    cfg = base_cfg.replace(
        **{
            "lake.root": str(root),
            "jobs.generate.out": str(landing),
            "jobs.generate.patients": ORACLE_PATIENTS,
            "jobs.generate.samples": 0,
            "jobs.generate.variants": 0,
            "jobs.generate.seed": 5,
            "jobs.generate.messy": False,
            "jobs.generate.survey_share": 0.0,  # the survey files are not read here
            "jobs.generate.partitions": 2,
            "jobs.ingest_ehr.sources": ["synthea"],
            "jobs.build_cohort.cohorts": ["t2d_incident"],
            "jobs.build_cohort.table1": False,
        }
    )
    runs: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    # generated code, as Spark runs by default: the suite's small lakes interpret expressions (tests/spark_conf),
    # but at 20,000 patients that made this fixture slower (915 s in the whole suite against 641 s the day before)
    with generated_code(spark):
        for step in STEPS:
            t0 = time.monotonic()
            runs[step] = execute(spark, cfg, step, run_id=f"o_{step}")
            seconds[step] = round(time.monotonic() - t0, 1)
            assert runs[step].status == "succeeded", (step, runs[step].metrics)
    steps = ", ".join(f"{k} {v}" for k, v in seconds.items())
    print(f"oracle fixture seconds: {steps} (total {sum(seconds.values()):.0f})")
    return {"cfg": cfg, "landing": landing, "runs": runs, "seconds": seconds}


def _true_p(landing: Path) -> dict[str, float]:
    """person_key -> the generator's true probability of incident T2D (0 where the generator had
    the patient as prevalent: a few whose cohort index, the first wellness visit of 2019, is an
    earlier visit than the generator's index)."""
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    with (landing / TRUTH).open(newline="") as f:
        rows = list(csv.DictReader(f))
    pseudonym = lambda pid: hmac.new(key, ("person\x1f" + pid).encode(), sha256).hexdigest()  # noqa: E731
    return {pseudonym(r["patient_id"]): float(r["p_t2d"] or 0) for r in rows}


def delong(y: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of several scores of the same persons and their covariance matrix (DeLong et al.
    1988): per-case and per-control placement values from mid-ranks (Sun & Xu 2014)."""
    from scipy.stats import rankdata

    pos = np.asarray(y).astype(bool)
    m, n = int(pos.sum()), int((~pos).sum())
    aucs, v10, v01 = [], [], []
    for s in scores:
        x, z = np.asarray(s, float)[pos], np.asarray(s, float)[~pos]
        both = rankdata(np.concatenate([x, z]))
        aucs.append((both[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((both[:m] - rankdata(x)) / n)  # share of controls below each case
        v01.append(1 - (both[m:] - rankdata(z)) / m)  # share of cases above each control
    cov = np.atleast_2d(np.cov(np.array(v10))) / m + np.atleast_2d(np.cov(np.array(v01))) / n
    return np.array(aucs), cov


def _held_out(spark: SparkSession, lake_: dict[str, Any]) -> dict[str, np.ndarray]:
    """label, the model's p and the oracle's p of every held-out person (a few thousand rows)."""
    import mlflow
    from pyspark.ml.functions import vector_to_array

    from omicslake.ml.model import split_column
    from omicslake.ml.tracking import setup

    cfg: Config = lake_["cfg"]
    m = lake_["runs"]["train"].metrics
    c = cfg.jobs.train
    setup(cfg)  # MLflow's tracking URI is process-wide: point it at this lake's store
    model = mlflow.spark.load_model(m["model_uri"])
    features = Lake(spark, cfg).read("gold.features_t2d_incident", version=m["table_version"])
    test = features.where(split_column(c.seed, c.test_fraction) == "test")
    test = test.withColumn("label", F.col("label").cast("double"))
    p = vector_to_array("probability").getItem(1).alias("p")
    rows = model.transform(test).select("person_key", "label", p, "lab_hba1c_last_1095d").collect()
    truth = _true_p(lake_["landing"])
    missing = [r.person_key for r in rows if r.person_key not in truth]
    assert not missing, f"{len(missing)} held-out persons of gold.features_t2d_incident: not in {TRUTH}"
    return {
        "y": np.array([int(r.label) for r in rows]),
        "model": np.array([r.p for r in rows]),
        "oracle": np.array([truth[r.person_key] for r in rows]),
        "hba1c": np.array([np.nan if r.lab_hba1c_last_1095d is None else r.lab_hba1c_last_1095d for r in rows]),
    }


@pytest.mark.slow
def test_held_out_auroc_within_0_03_of_the_oracle_on_the_same_persons(
    spark: SparkSession, oracle_lake: dict[str, Any]
) -> None:
    from sklearn.metrics import roc_auc_score

    m = oracle_lake["runs"]["train"].metrics
    h = _held_out(spark, oracle_lake)
    y, model, oracle = h["y"], h["model"], h["oracle"]
    cases = int(y.sum())
    assert len(y) == m["n_test"]
    # Enough held-out cases for a 0.03 bar to be tested rather than drowned in noise.
    assert cases >= MIN_HELD_OUT_CASES, f"{cases} held-out cases: generate more patients (ORACLE_PATIENTS)"
    # The predictions we compare are the job's: scikit-learn's AUROC of them is the job's metric, which
    # keeps every threshold (ml.model.ranking_metrics; MLlib's evaluator binned them, equal to about
    # 1e-3); the job reports it to 4 places
    assert roc_auc_score(y, model) == pytest.approx(m["test_auroc"], abs=5.1e-5)
    (a_model, a_oracle), cov = delong(y, model, oracle)
    assert a_model == pytest.approx(roc_auc_score(y, model), abs=1e-12)
    assert a_oracle == pytest.approx(roc_auc_score(y, oracle), abs=1e-12)
    gap = a_oracle - a_model
    se = float(np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))
    # A paired bootstrap of persons (fixed seed) as a second opinion on DeLong's standard error.
    rng = np.random.default_rng(20_000)
    boot = []
    for _ in range(500):
        i = rng.integers(0, len(y), len(y))
        boot.append(roc_auc_score(y[i], oracle[i]) - roc_auc_score(y[i], model[i]))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    boot_se = float(np.std(boot, ddof=1))
    print(
        f"held-out n={len(y)}, {cases} cases; AUROC model {a_model:.4f}, oracle {a_oracle:.4f} on the same "
        f"persons; gap {gap:.4f} (DeLong SE {se:.4f}, 95% CI {gap - 1.96 * se:.4f} to "
        f"{gap + 1.96 * se:.4f}; "
        f"paired bootstrap SE {boot_se:.4f}, 95% CI {lo:.4f} to {hi:.4f}); bar: gap <= {BAR}; "
        f"best params {m['best_params']}"
    )
    assert 0.75 < se / boot_se < 1.33, "DeLong's and the bootstrap's standard errors disagree"
    assert a_model >= a_oracle - BAR, (
        f"held-out AUROC {a_model:.4f} < oracle {a_oracle:.4f} - {BAR} on the same persons (gap {gap:.4f}): "
        "look at the features, the grid, the class weights and the generator's signal; do not move the bar"
    )
    # ... and it beats a trivial baseline on the same persons: the last HbA1c before index alone
    # (the strongest single planted feature), by more than chance on a paired test.
    hba1c = np.where(np.isnan(h["hba1c"]), np.nanmedian(h["hba1c"]), h["hba1c"])
    (a_m, a_b), cov_b = delong(y, model, hba1c)
    lower = (a_m - a_b) - 1.96 * float(np.sqrt(cov_b[0, 0] + cov_b[1, 1] - 2 * cov_b[0, 1]))
    print(f"baseline (last HbA1c alone) AUROC {a_b:.4f}; model - baseline {a_m - a_b:.4f}, 95% lower bound {lower:.4f}")
    assert lower > 0, f"the model does not beat the last HbA1c alone (AUROC {a_m:.4f} vs {a_b:.4f})"


def _calibration(y: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    """statsmodels: calibration-in-the-large (intercept with logit(risk) as offset), the slope
    (logistic regression of y on logit(risk)), Brier."""
    import statsmodels.api as sm

    lp = np.log(risk / (1 - risk))
    citl = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    return {
        "intercept": float(citl.params[0]),
        "intercept_se": float(citl.bse[0]),
        "slope": float(slope.params[1]),
        "slope_se": float(slope.bse[1]),
        "brier": float(np.mean((risk - y) ** 2)),
        "mean_risk": float(risk.mean()),
    }


def _held_out_risks(spark: SparkSession, cfg: Config, m: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out label, the model's own output and the calibrated risk (the map logged with the model)."""
    import mlflow
    from pyspark.ml.functions import vector_to_array

    from omicslake.ml.model import split_column
    from omicslake.ml.risk import Calibration
    from omicslake.ml.tracking import risk_metadata, setup

    c = cfg.jobs.train
    setup(cfg)
    model = mlflow.spark.load_model(m["model_uri"])
    cal = Calibration.from_dict(risk_metadata(m["registered_model"], m["model_version"])["calibration"])
    test = (
        Lake(spark, cfg)
        .read("gold.features_t2d_incident", version=m["table_version"])
        .where(split_column(c.seed, c.test_fraction) == "test")
    )
    pdf = (
        model.transform(test)
        .select(F.col("label").cast("int").alias("y"), vector_to_array("probability").getItem(1).alias("p"))
        .toPandas()
    )
    p = pdf["p"].to_numpy()
    return pdf["y"].to_numpy(), p, cal.apply(p)


@pytest.mark.slow
def test_held_out_risks_are_calibrated(spark: SparkSession, oracle_lake: dict[str, Any]) -> None:
    """The default model's held-out risks (after the recalibration fitted on the calibration split):
    intercept within +/- 0.1, slope within 0.9-1.1 (statsmodels), and its output before recalibration.
    With OMICSLAKE_ORACLE_UNWEIGHTED=1 the same model trained without class weights is printed beside
    it (a diagnostic with no assertion: a second 20,000-patient train, ~3 minutes, off in the suite)."""
    cfg: Config = oracle_lake["cfg"]
    m = oracle_lake["runs"]["train"].metrics
    assert cfg.jobs.train.calibration == "platt" and cfg.jobs.train.class_weights  # the defaults
    models = [("weighted (default)", m)]
    if os.environ.get("OMICSLAKE_ORACLE_UNWEIGHTED") == "1":
        unweighted_cfg = cfg.replace(
            **{
                "jobs.train.class_weights": False,
                "jobs.train.registered_model": "oracle_unweighted",
                "jobs.train.alias": None,
            }
        )
        unweighted = execute(spark, unweighted_cfg, "train", run_id="o_train_unweighted")
        assert unweighted.status == "succeeded", unweighted.metrics
        models.append(("unweighted", unweighted.metrics))
    rows = {}
    for label, run in models:
        y, raw, risk = _held_out_risks(spark, cfg, run)
        rows[label] = {
            "raw": _calibration(y, raw),
            "calibrated": _calibration(y, risk),
            "n": len(y),
            "cases": int(y.sum()),
            "auroc": run["test_auroc"],
            "mlflow_run": run["mlflow_run_id"],
        }
    first = rows["weighted (default)"]
    print(f"held-out calibration (statsmodels), n={first['n']}, {first['cases']} cases:")
    print(f"{'model':<20}{'output':<12}{'intercept':>16}{'slope':>16}{'Brier':>8}{'mean':>7}{'AUROC':>7}")
    for label, r in rows.items():
        for kind in ("raw", "calibrated"):
            k = r[kind]
            print(
                f"{label:<20}{kind:<12}{k['intercept']:>9.3f} ({k['intercept_se']:.3f}){k['slope']:>9.3f} ({k['slope_se']:.3f})"
                f"{k['brier']:>8.4f}{k['mean_risk']:>7.3f}{r['auroc']:>7.3f}"
            )
    # our own metrics (MLflow) measure the same thing as statsmodels
    d = rows["weighted (default)"]["calibrated"]
    assert m["test_calibration_intercept"] == pytest.approx(d["intercept"], abs=1e-3)
    assert m["test_calibration_slope"] == pytest.approx(d["slope"], abs=1e-3)
    assert abs(d["intercept"]) <= 0.1, f"held-out calibration intercept {d['intercept']:.3f}: outside +/- 0.1"
    assert 0.9 <= d["slope"] <= 1.1, f"held-out calibration slope {d['slope']:.3f}: outside 0.9-1.1"
