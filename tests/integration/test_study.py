"""The study job on the session's whole-pipeline lake (tests/pipeline_lake.py: the generator writes its
planted drug exposure into the EHR files, ``jobs.generate.exposure_share``; ingest_ehr -> conform_ehr
-> build_cohort -> study ran through spark-submit). The planted truth is read from the generator's
manifest and truth/exposure.csv, never typed here: the crude HR is biased away from it, IPTW and
matching cover it, balance after adjustment is within 0.1 SMD; the population the job built from the
lake is the generator's, person by person (pseudonyms recomputed from the truth file's patient ids);
every study table has its contract; the MLflow run holds the same numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import load_config
from omicslake.io.delta import Lake

STUDY = "new_vs_old_drug"
TABLES = ("estimates", "balance", "ps", "incidence", "km", "modification", "attrition", "mediation")


@pytest.fixture(scope="module")
def lake(spark: SparkSession, pipeline: dict[str, Any]) -> Lake:
    return Lake(spark, load_config("local", overrides=[f"lake.root={pipeline['lake']}"]))


@pytest.fixture(scope="module")
def truth(pipeline: dict[str, Any]) -> dict[str, Any]:
    manifest = json.loads((Path(pipeline["lake"]) / "landing" / "manifest.json").read_text())
    return dict(manifest["exposure"])


def test_the_study_recovers_the_planted_hazard_ratio(lake: Lake, truth: dict[str, Any]) -> None:
    true_hr = float(truth["true_hr"]["outcome"])
    est = {(r["outcome"], r["analysis"]): r.asDict() for r in lake.read(f"gold.study_{STUDY}_estimates").collect()}
    for (o, a), e in sorted(est.items()):
        print(
            f"[study] {a:>14} {o:>9}: HR {e['hr']:.3f} ({e['hr_lower']:.3f}-{e['hr_upper']:.3f}), {e['events']} events"
        )
    crude = est[("outcome", "crude")]
    # confounding by indication: the crude estimate is biased away from the truth (its CI excludes it)
    assert crude["hr_lower"] > true_hr, crude
    for analysis in ("iptw", "matching"):
        e = est[("outcome", analysis)]
        assert e["hr_lower"] < true_hr < e["hr_upper"], (analysis, e)
        assert e["converged"]
    # IPTW for the ATE estimates the marginal HR (nearer 1 than the conditional one; the generator's
    # Cox model of both potential outcomes of every patient in the EHR files): its CI covers that too
    marginal = float(truth["true_marginal_hr_in_ehr"]["outcome"])
    assert true_hr < marginal < 1
    assert est[("outcome", "iptw")]["hr_lower"] < marginal < est[("outcome", "iptw")]["hr_upper"]
    bal = [r.asDict() for r in lake.read(f"gold.study_{STUDY}_balance").collect()]
    after = {a: max(abs(b["smd_after"]) for b in bal if b["analysis"] == a) for a in ("iptw", "matching")}
    print(f"[study] max |SMD| before {max(abs(b['smd_before']) for b in bal):.3f}, after {after}")
    assert max(abs(b["smd_before"]) for b in bal) > 0.3  # the confounding is there to adjust for
    assert all(v < 0.1 for v in after.values()), after
    # negative controls (HR 1 planted): the adjusted CIs cover 1 (5 at 95 %: at most one miss), calibrated
    nc = [e for (o, a), e in est.items() if a == "iptw" and o in truth["negative_controls"]]
    assert len(nc) == len(truth["negative_controls"]) == 5
    assert sum(e["hr_lower"] < 1 < e["hr_upper"] for e in nc) >= 4
    assert all(e["calibrated_p"] is not None for e in est.values() if e["analysis"] == "iptw")


def test_the_population_is_the_generators_person_by_person(
    spark: SparkSession, lake: Lake, truth: dict[str, Any], pipeline: dict[str, Any], pseudonym_key: str
) -> None:
    """Arms, outcome events and time at risk of the study's persons equal the generator's truth file,
    joined on the pseudonym the test computes from the truth's patient ids with the session's key."""
    from omicslake.ehr.deid import pseudonym

    path = Path(pipeline["lake"]) / "landing" / truth["file"]
    t = spark.read.option("header", True).csv(str(path))
    t = t.withColumn("person_key", pseudonym(pseudonym_key.encode(), "person", F.col("patient_id")))
    ps = lake.read(f"gold.study_{STUDY}_ps")
    joined = ps.join(t, "person_key", "left")
    row = joined.agg(
        F.count(F.lit(1)).alias("persons"),
        F.sum(F.col("patient_id").isNull().cast("int")).alias("unknown"),
        F.sum((F.col("target") != F.col("treated").cast("int")).cast("int")).alias("wrong_arm"),
        F.sum(F.col("outcome_event").cast("int")).alias("events"),
        F.sum(F.col("in_ehr").cast("int")).alias("in_ehr"),
    ).first()
    assert row is not None
    crude = lake.read(f"gold.study_{STUDY}_estimates").where("outcome = 'outcome' AND analysis = 'crude'").first()
    assert crude is not None
    assert row["unknown"] == 0 and row["wrong_arm"] == 0 and row["in_ehr"] == row["persons"]
    assert row["persons"] == crude["persons"] > 400
    # the outcomes the job found in silver are the generator's
    assert row["events"] == crude["events"] > 100
    # and so is the time at risk (ended by the drug's stop or death): person-years per arm
    days = {
        r["target"]: (float(r["days"]), int(r["events"]))
        for r in joined.groupBy("target")
        .agg(
            F.sum(F.col("outcome_days").cast("double")).alias("days"),
            F.sum(F.col("outcome_event").cast("int")).alias("events"),
        )
        .collect()
    }
    # the mediation's persons are the study's, and its intervals hold the planted natural effects over
    # exactly those persons (the truth file's exact E[Y(t, M(m))] per person, averaged; exposure.mediation_truth).
    # Asserted: the mediated share (issue 16's criterion; its interval is wide at this size, so it catches
    # gross errors only) and the natural indirect effect, the one that runs through the mediator. Four 95 %
    # intervals of one seeded lake miss at least one about one time in five by chance (6 of 42 seeds with
    # the EHR's covariates in bench/results/coverage/mediation.json; this pair 1 of 42), so all four are
    # printed and their coverage is measured over many seeds by bench/mediation_coverage.py.
    from omicslake.synth import exposure

    med = {r["effect"]: r for r in lake.read(f"gold.study_{STUDY}_mediation").collect()}
    planted = exposure.mediation_truth(
        joined.select(*[F.col(c).cast("double").alias(c) for c in exposure.MEDIATION_TRUTH])
    )
    assert med["nie"]["persons"] == planted["persons"] == row["persons"]
    for effect in ("nie", "nde", "total", "prop_mediated"):
        m = med[effect]
        print(
            f"[study] mediation {effect}: {m['estimate']:.4f} ({m['lower']:.4f} to {m['upper']:.4f}), "
            f"planted {planted[effect]:.4f}"
        )
    for effect in ("prop_mediated", "nie"):
        m = med[effect]
        assert m["lower"] < planted[effect] < m["upper"], (effect, planted[effect], m.asDict())
    inc = lake.read(f"gold.study_{STUDY}_incidence").where("outcome = 'outcome' AND by = 'overall'").collect()
    assert len(inc) == 2
    for r in inc:
        want_days, want_events = days[1 if r["arm"] == "target" else 0]
        assert abs(r["person_years"] * 365.25 - want_days) < 1e-6 and r["events"] == want_events, r


def test_every_study_table_has_its_contract_and_the_mlflow_run_its_numbers(
    lake: Lake, pipeline: dict[str, Any]
) -> None:
    import mlflow

    from omicslake.contracts import contract_path, load_contract
    from omicslake.ml.tracking import setup

    for name in TABLES:
        table = f"gold.study_{STUDY}_{name}"
        assert table in pipeline["tables"], table
        path = contract_path(table)
        assert path is not None and path.name == f"study_{{name}}_{name}.yaml"
        declared = [(c.name, c.type) for c in load_contract(table).columns]
        actual = [(f.name, f.dataType.simpleString()) for f in lake.read(table).schema.fields]
        assert actual == declared, table
    exp = setup(lake.cfg)
    runs = mlflow.search_runs(
        experiment_ids=[exp],
        filter_string=f"tags.`omicslake.job` = 'study' and tags.`omicslake.study` = '{STUDY}'",
        output_format="list",
    )
    assert len(runs) == 1
    iptw = lake.read(f"gold.study_{STUDY}_estimates").where("outcome = 'outcome' AND analysis = 'iptw'").first()
    assert iptw is not None
    assert abs(runs[0].data.metrics["hr_outcome_iptw"] - iptw["hr"]) < 1e-9
    assert runs[0].data.params["cohort"] == "t2d_incident"
    # the study file mediates the planted ACS outcome through LDL: the table and the run agree
    med = {r["effect"]: r for r in lake.read(f"gold.study_{STUDY}_mediation").collect()}
    assert {"nie", "nde", "total", "prop_mediated"} <= set(med), sorted(med)
    assert med["nie"]["persons"] > 0 and med["nie"]["mediator"] == "ldl_90d"
    for effect in ("nie", "nde", "total"):
        assert abs(runs[0].data.metrics[f"mediation_{effect}"] - med[effect]["estimate"]) < 1e-9, effect


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"cohort": "no_such_cohort"},
            "InputError",
            r"study toy: gold.cohort_no_such_cohort does not exist; add cohort 'no_such_cohort' to jobs.build_cohort.cohorts",
        ),
        (
            {"target": {"name": "nobody", "codes": ["000000"]}},
            "StudyError",
            r"study toy \(.*toy.yaml\): the target arm is empty",
        ),
    ],
)
def test_a_bad_study_fails_naming_the_study_and_what_to_do(
    spark: SparkSession, lake: Lake, tmp_path: Path, change: dict[str, Any], error: str, message: str
) -> None:
    """Run (not execute: nothing is written, the session's lake stays as it is) on a study file
    changed from the demo's."""
    import yaml

    from omicslake.causal.population import study_path
    from omicslake.jobs import study

    raw = yaml.safe_load(study_path(STUDY).read_text())
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": "toy", **change}))
    cfg = lake.cfg.replace(**{"jobs.study.studies": (str(path),)})
    with pytest.raises(Exception, match=message) as caught:
        study.run(spark, cfg, Lake(spark, cfg, run_id="bad-study", job="study"))
    assert type(caught.value).__name__ == error


def test_covariates_that_predict_treatment_fail_the_study_job(
    spark: SparkSession, lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study whose covariates together predict the arm (here a column made from the arm and age,
    each overlapping between the arms on its own) fails the job with the study's name and the
    covariates, never a number: the population the job builds from the lake gets the leaky column
    (no real feature of the generated lake separates the arms)."""
    import yaml

    from omicslake.causal import population as pop_module
    from omicslake.causal.population import study_path
    from omicslake.causal.study import StudyError
    from omicslake.jobs import study

    real = pop_module.population

    def leaky(*args: Any, **kw: Any) -> Any:
        pop, steps = real(*args, **kw)
        return pop.withColumn("leak", (2 * F.col("target") - 1) * 10.0 + F.col("age")), steps

    monkeypatch.setattr(pop_module, "population", leaky)
    raw = yaml.safe_load(study_path(STUDY).read_text())
    raw["covariates"] = {**raw["covariates"], "leak": "female"}  # the design name must map to a feature
    raw["design"] = {**raw["design"], "covariates": ["age", "leak"], "analyses": ["crude"]}
    path = tmp_path / "leaky.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": "leaky"}))
    cfg = lake.cfg.replace(**{"jobs.study.studies": (str(path),)})
    with pytest.raises(
        StudyError,
        match=r"study leaky \(.*leaky.yaml\): propensity model: covariates \['age', 'leak'\] jointly predict",
    ):
        study.run(spark, cfg, Lake(spark, cfg, run_id="leaky-study", job="study"))


def test_a_failing_study_puts_the_tables_of_the_studies_before_it_back(
    spark: SparkSession, lake: Lake, tmp_path: Path
) -> None:
    """Two studies in one run, the second failing (its target arm is empty) after the first wrote its
    tables and its MLflow run: no row of the first is left in the lake (its tables, new in this run, are
    emptied; Lake.undo_on_error, tested in test_lake, restores tables that had versions before). On a
    lake of its own holding copies of the tables a study reads, so the session's lake stays as it is."""
    import yaml

    from omicslake.causal.population import study_path
    from omicslake.jobs import study

    cfg = lake.cfg.replace(**{"lake.root": str(tmp_path / "lake")})
    own = Lake(spark, cfg, run_id="copy")
    for t in ("silver.person", "silver.drug_exposure", "silver.condition_occurrence"):
        own.write(lake.read(t), t, mode="overwrite")
    for t in ("gold.cohort_t2d_incident", "gold.features_t2d_incident"):
        own.write(lake.read(t), t, mode="overwrite", merge_schema=True)
    raw = yaml.safe_load(study_path(STUDY).read_text())
    raw.pop("measurements")
    quick = {**raw["design"], "analyses": ["crude"], "negative_controls": [], "modifiers": [], "incidence_by": []}
    quick.pop("mediation")
    files = []
    for name, change in (("good", {}), ("nobody", {"target": {"name": "nobody", "codes": ["000000"]}})):
        files.append(str(tmp_path / f"{name}.yaml"))
        Path(files[-1]).write_text(yaml.safe_dump({**raw, "name": name, "design": quick, **change}))
    both = cfg.replace(**{"jobs.study.studies": tuple(files)})
    with pytest.raises(Exception, match="the target arm is empty"):
        study.run(spark, both, Lake(spark, both, run_id="both", job="study"))
    written = [f"gold.study_good_{t}" for t in ("estimates", "balance", "ps", "incidence", "km", "attrition")]
    assert all(own.version(t) == 1 for t in written)  # written (0), then emptied (1)
    assert all(own.read(t).count() == 0 for t in written)
    assert not own.exists("gold.study_nobody_estimates")
