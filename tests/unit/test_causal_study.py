"""causal.study on the generator's planted truth (synth.exposure on synth.people): the crude HR is
biased away from the planted HR, IPTW and matching recover it (95 % CI covers it), balance after
adjustment is within 0.1 SMD, negative controls cover 1; bad designs get a StudyError."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.causal import study
from omicslake.errors import ConfigError
from omicslake.synth import exposure, people

COVS = ("age", "bmi", "hba1c", "female")


@pytest.fixture(scope="module")
def population(spark: SparkSession) -> DataFrame:
    base = people.patients_base(spark, 4000, 42, 2)
    df = exposure.simulate(base, 42).withColumn("female", (F.col("sex") == "F").cast("double"))
    return df.withColumnRenamed("patient_id", "person_key").withColumnRenamed("treated", "target").cache()


def design(**kw: object) -> study.StudyDesign:
    args: dict[str, object] = {
        "treatment": "target",
        "covariates": COVS,
        "outcomes": ("outcome",),
        "negative_controls": exposure.NEGATIVE_CONTROLS,
        "analyses": ("crude", "iptw", "matching"),
    }
    args.update(kw)
    return study.StudyDesign(**args)  # type: ignore[arg-type]


@pytest.mark.slow
def test_planted_hazard_ratio_is_recovered(population: DataFrame) -> None:
    res = study.run_study(
        population, design(modifiers=("female",), analyses=("crude", "iptw", "matching"), incidence_by=("sex",))
    )
    est = {(e["outcome"], e["analysis"]): e for e in res.estimates}
    truth = exposure.TRUE_HR
    crude, iptw, matched = est[("outcome", "crude")], est[("outcome", "iptw")], est[("outcome", "matching")]
    for e in res.estimates:
        print(f"[estimate] {e['analysis']} {e['outcome']}: HR {e['hr']:.3f} ({e['hr_lower']:.3f}-{e['hr_upper']:.3f})")
    # confounding by indication: the crude estimate excludes the truth (biased towards harm)
    assert crude["hr_lower"] > truth and crude["hr"] > 1.0
    for e in (iptw, matched):
        assert e["hr_lower"] < truth < e["hr_upper"], e["analysis"]
    bal = [b for b in res.balance if b["analysis"] in ("iptw", "matching")]
    assert max(abs(b["smd_after"]) for b in bal) < 0.1
    assert max(abs(b["smd_before"]) for b in bal) > 0.5
    # negative controls: the adjusted CIs cover 1 (5 controls at 95 %: at most one miss)
    nc = [e for e in res.estimates if e["negative_control"] and e["analysis"] == "iptw"]
    assert len(nc) == 5 and sum(e["hr_lower"] < 1 < e["hr_upper"] for e in nc) >= 4
    crude_nc = [e for e in res.estimates if e["negative_control"] and e["analysis"] == "crude"]
    assert sum(e["hr_lower"] > 1 for e in crude_nc) >= 4  # the crude ones are biased
    assert "iptw" in res.calibration and "calibrated_p" in iptw
    inc = {r["arm"]: r for r in res.incidence if r["by"] == "overall"}
    assert inc["target"]["events"] + inc["comparator"]["events"] == crude["events"]
    by_sex = [r for r in res.incidence if r["by"] == "sex"]
    assert {(r["arm"], r["level"]) for r in by_sex} == {(a, s) for a in ("target", "comparator") for s in ("F", "M")}
    assert sum(r["events"] for r in by_sex) == crude["events"]
    assert {m["level"] for m in res.modification} == {"interaction", "0", "1"}


def test_bad_designs(spark: SparkSession, population: DataFrame) -> None:
    with pytest.raises(study.StudyError, match="no outcomes"):
        study.validate(population, design(outcomes=()))
    with pytest.raises(study.StudyError, match="the comparator arm is empty"):
        study.validate(population.where("target = 1"), design())
    with pytest.raises(study.StudyError, match=r"no columns \['nope_days', 'nope_event'\]"):
        study.validate(population, design(outcomes=("nope",)))
    with pytest.raises(study.StudyError, match="unknown analyses"):
        study.validate(population, design(analyses=("ipw",)))
    leaky = population.withColumn("on_new_drug", F.col("target").cast("double"))
    with pytest.raises(study.StudyError, match=r"\['on_new_drug'\] predict treatment perfectly"):
        study.run_study(leaky, design(covariates=(*COVS, "on_new_drug"), analyses=("crude",)))
    none = population.withColumn("outcome_event", F.lit(0))
    with pytest.raises(study.StudyError, match="no outcome has any event"):
        study.validate(none, design())


def test_empirical_null() -> None:
    # hand-made: controls exactly at log HR 0.2 with tiny SEs -> mu 0.2, sigma ~ 0
    mu, sigma = study.fit_null([0.2, 0.2, 0.2, 0.2], [1e-3] * 4)
    assert abs(mu - 0.2) < 1e-6 and sigma < 1e-2
    c = study.calibrate(0.2, 0.1, mu, sigma)
    assert abs(c["calibrated_p"] - 1.0) < 1e-3  # an estimate equal to the bias is null
    assert c["calibrated_hr_lower"] < 1 < c["calibrated_hr_upper"]
    assert abs(math.log(c["calibrated_hr_upper"]) - 1.959964 * math.sqrt(0.01 + sigma**2)) < 1e-4


def test_design_from_yaml() -> None:
    from omicslake.causal.population import load_study

    spec = load_study("new_vs_old_drug")
    d = spec.design
    assert d.treatment == "target" and d.id_col == "person_key"
    assert d.outcomes == ("outcome", "modified") and d.negative_controls == exposure.NEGATIVE_CONTROLS
    assert d.analyses == ("crude", "iptw", "matching", "stratification") and d.max_weight is None
    raw = {k: v for k, v in spec.design.__dict__.items() if k not in ("treatment", "id_col")}
    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}
    raw["treatment"] = "target"
    with pytest.raises(ConfigError, match=r"x.yaml: unknown study keys \['outcome'\]"):
        study.design_from_dict({**raw, "outcome": "typo"}, "x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml: the study needs \['outcomes'\]"):
        study.design_from_dict({k: v for k, v in raw.items() if k != "outcomes"}, "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: covariates must be a list"):
        study.design_from_dict({**raw, "covariates": "age"}, "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: caliper must be a number"):
        study.design_from_dict({**raw, "caliper": "wide"}, "x.yaml")


@pytest.mark.slow  # 57 s under a load of 7 on 2 cores (mediate's Newton steps are one Spark job each)
def test_planted_mediation_is_recovered(population: DataFrame) -> None:
    """The generator's mediator (LDL at 90 days, lowered by the new drug) and mediated outcome (ACS
    within 365 days): the planted natural indirect and direct effects, total and proportion mediated
    (exact population averages, exposure.mediation_truth) lie in the study's 95 % intervals."""
    med = study.MediationDesign(mediator="ldl_90d", outcome="mediated", window=365, draws=1000, seed=1)
    rows, note = study.run_mediation(population, design(mediation=med))
    est = {r["effect"]: r for r in rows}
    truth = exposure.mediation_truth(population)
    for eff in ("nie", "nde", "total", "prop_mediated"):
        e = est[eff]
        print(
            f"[mediation] {eff}: truth {truth[eff]:.4f} estimate {e['estimate']:.4f} ({e['lower']:.4f}, {e['upper']:.4f})"
        )
        assert e["lower"] < truth[eff] < e["upper"], eff
    assert est["nie"]["upper"] < 0 and est["nde"]["upper"] < 0  # both planted effects are there, not nil
    assert est["nie"]["persons"] == truth["persons"] == 4000 and note == ""
    assert est["nie"]["mediator_model"] == "linear" and est["nie"]["outcome_model"] == "logistic"


def test_bad_mediation_designs(population: DataFrame) -> None:
    with pytest.raises(study.StudyError, match="no mediator column 'ldl_1y'"):
        study.validate(population, design(mediation=study.MediationDesign(mediator="ldl_1y", outcome="mediated")))
    flat = population.withColumn("ldl_90d", F.lit(120.0))
    with pytest.raises(study.StudyError, match="the mediator 'ldl_90d' is constant in the 4000 persons"):
        study.run_mediation(flat, design(mediation=study.MediationDesign(mediator="ldl_90d", outcome="mediated")))
    with pytest.raises(study.StudyError, match="mediator 'age' is also an adjustment covariate"):
        study.run_mediation(population, design(mediation=study.MediationDesign(mediator="age", outcome="mediated")))
    raw = {"treatment": "target", "covariates": list(COVS), "outcomes": ["outcome"]}
    bad = {"mediator": "ldl_90d", "outcome": "mediated", "mediator_model": "probit"}
    with pytest.raises(
        ConfigError, match=r"x.yaml: design.mediation.mediator_model must be one of \['linear', 'logistic'\]"
    ):
        study.design_from_dict({**raw, "mediation": bad}, "x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown design.mediation keys \['sims'\]"):
        study.design_from_dict({**raw, "mediation": {"mediator": "m", "outcome": "o", "sims": 5}}, "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: design.mediation.window must be a positive whole number"):
        study.design_from_dict({**raw, "mediation": {"mediator": "m", "outcome": "o", "window": -3}}, "x.yaml")


def test_planted_mediation_truth_is_the_integral() -> None:
    """exposure.expected_outcome (Gauss-Hermite) equals scipy's adaptive quad of the same integral:
    the outcome's probability with the mediator's normal noise integrated out."""
    from scipy import integrate, stats

    sd, b = exposure.MEDIATOR["sd"], exposure.MEDIATED["ldl_per_10"] / 10
    etas = np.array([-4.0, -2.3, -0.5, 0.0, 1.7])
    got = exposure.expected_outcome(etas)
    for eta, g in zip(etas, got, strict=True):
        ref, _ = integrate.quad(
            lambda e, eta=eta: stats.norm.pdf(e, 0, sd) / (1 + np.exp(-(eta + b * e))), -10 * sd, 10 * sd
        )
        assert abs(g - ref) < 1e-12, (eta, g, ref)


def test_the_planted_marginal_hr_is_the_cox_model_of_both_potential_outcomes(spark: SparkSession) -> None:
    """A person's potential outcome of their own arm is their simulated outcome; the marginal HR is
    lifelines' Cox model of the arm on both potential outcomes of everybody (Efron ties), nearer 1 than
    the conditional HR (non-collapsibility; at 20,000 persons it is 0.648 for the planted 0.6)."""
    from lifelines import CoxPHFitter

    sim = exposure.simulate(people.patients_base(spark, 3000, 7, 2), 7).cache()
    for name in ("outcome", "modified"):
        po = exposure.potential_outcomes(sim, 7, name)
        own = po.join(sim, "idx").where(F.col("arm") == F.col("treated"))
        wrong = own.where((F.col("days") != F.col(f"{name}_days")) | (F.col("event") != F.col(f"{name}_event")))
        assert own.count() == 3000 and wrong.count() == 0, name
    hr = exposure.marginal_hrs(sim, 7)
    assert hr is not None
    pooled = exposure.potential_outcomes(sim, 7, "outcome").select("arm", "days", "event").toPandas()
    ref = CoxPHFitter().fit(pooled, "days", "event")  # lifelines: Efron ties
    assert abs(hr["outcome"] - float(np.exp(ref.params_["arm"]))) < 1e-6
    assert exposure.TRUE_HR < hr["outcome"] < 1
    assert exposure.marginal_hrs(sim, 7, F.lit(False)) is None
