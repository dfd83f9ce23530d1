"""The generated REDCap-style study (synth/survey.py) through ingest_survey, conform_survey and
psychometrics: gold alpha equals pingouin's on the same answers read straight from the export,
the planted reliability lies in alpha's interval, retest ICC equals pingouin's, identifiers stop
at bronze, participants link to the generated patients, completeness by site (the data access group)
equals the generator's truth per site."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute
from omicslake.synth import survey as S

pytestmark = pytest.mark.slow  # one module lake: three survey jobs, about three minutes on two cores

PATIENTS = 400


def _pseudonym(domain: str, value: str) -> str:
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    return hmac.new(key, f"{domain}\x1f{value}".encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def study(spark: SparkSession, base_cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("study")
    manifest = S.generate([f"patient-{i:04d}" for i in range(PATIENTS)], 5, root / "landing")
    cfg = base_cfg.replace(**{"lake.root": str(root / "lake"), "jobs.generate.out": str(root / "landing")})
    runs = {j: execute(spark, cfg, j, run_id="g1") for j in ("ingest_survey", "conform_survey", "psychometrics")}
    export = pd.read_csv(root / "landing" / manifest["folder"] / "records.csv", dtype=str, keep_default_na=False)
    return {"cfg": cfg, "manifest": manifest, "runs": runs, "export": export}


def _keyed_items(export: pd.DataFrame, scale: str, event: str) -> pd.DataFrame:
    """The scale's items at an event, straight from the export, reverse-keyed by hand (6 - x)."""
    truth = S.SCALES[scale]
    rows = export[(export.redcap_event_name == event) & (export.redcap_repeat_instrument == "")]
    x = rows.set_index("record_id")[truth["items"]].replace("", np.nan).astype(float)
    for item in truth["reverse"]:
        x[item] = 6 - x[item]
    return x


def test_alpha_equals_pingouin_and_holds_the_planted_reliability(spark: SparkSession, study: dict[str, Any]) -> None:
    pg = pytest.importorskip("pingouin")
    rel = {
        (r.scale, r.subscale, r.event): r
        for r in Lake(spark, study["cfg"]).read("gold.scale_reliability").collect()  # a few rows
    }
    for scale in ("mood", "anxiety"):
        x = _keyed_items(study["export"], scale, "baseline_arm_1").dropna()
        alpha, ci = pg.cronbach_alpha(x)
        r = rel[(scale, "total", "baseline_arm_1")]
        assert r.n == len(x) and r.items == len(S.SCALES[scale]["items"])
        assert r.alpha == pytest.approx(alpha, abs=1e-6)
        assert (round(r.alpha_ci_low, 3), round(r.alpha_ci_high, 3)) == tuple(ci)
        planted = study["manifest"]["truth"]["scales"][scale]["alpha"]
        assert r.alpha_ci_low <= planted <= r.alpha_ci_high, (scale, planted, r.alpha_ci_low, r.alpha_ci_high)
        assert r.n_factors == 1  # one latent trait per scale
    assert rel[("mood", "affect", "followup_arm_1")].items == 3


def test_item_stats_show_the_keyed_items_all_positive(spark: SparkSession, study: dict[str, Any]) -> None:
    items = Lake(spark, study["cfg"]).read("gold.scale_items").where("subscale = 'total'").collect()
    assert len(items) == 2 * (6 + 5)
    assert min(r.item_total_r for r in items) > 0.3  # reverse-keyed items were reversed before analysis
    loadings = Lake(spark, study["cfg"]).read("gold.scale_loadings").where("event = 'baseline_arm_1'").collect()
    planted = dict(zip(S.SCALES["mood"]["items"], S.SCALES["mood"]["loadings"], strict=True))
    mood = {r.item: r.loading for r in loadings if r.scale == "mood"}
    # keyed items all load positively and strongly on the one factor of the planted trait
    assert set(mood) == set(planted) and all(v > 0.5 for v in mood.values())


def test_retest_icc_equals_pingouin(spark: SparkSession, study: dict[str, Any]) -> None:
    pg = pytest.importorskip("pingouin")
    export = study["export"]
    k = len(S.SCALES["mood"]["items"])
    scores = {}
    for event in S.EVENTS:
        x = _keyed_items(export, "mood", event)
        ok = x.isna().sum(axis=1) <= 0.2 * k  # at most 20 % missing, prorated sum
        scores[event] = (x.mean(axis=1) * k)[ok]
    both = pd.concat(scores, axis=1).dropna()
    long = both.reset_index().melt(id_vars="record_id", var_name="event", value_name="score")
    ref = pg.intraclass_corr(long, targets="record_id", raters="event", ratings="score").set_index("Type")["ICC"]
    r = Lake(spark, study["cfg"]).read("gold.scale_retest").where("scale = 'mood' AND subscale = 'total'").first()
    assert (r.event_1, r.event_2, r.n) == ("baseline_arm_1", "followup_arm_1", len(both))
    assert r.icc_a1 == pytest.approx(ref["ICC(A,1)"], abs=1e-6)
    assert r.icc_c1 == pytest.approx(ref["ICC(C,1)"], abs=1e-6)


def test_scores_branching_identifiers_and_links(spark: SparkSession, study: dict[str, Any]) -> None:
    lake = Lake(spark, study["cfg"])
    m, export = study["manifest"], study["export"]
    values = lake.read("silver.survey_values")
    fields = {r[0] for r in values.select("field").distinct().collect()}
    assert not fields & {"name", "phone", "dob", "comments", "record_id"}
    cigs = {r[0]: r[1] for r in values.where("field = 'cigs_per_day'").groupBy("status").count().collect()}
    assert cigs == {"answered": m["smokers"], "not_shown": PATIENTS - m["smokers"]}
    assert values.where("field = 'conditions'").count() == PATIENTS
    visits = export[export.redcap_repeat_instrument == "visit"]
    assert values.where("instrument = 'visit' AND field = 'sbp'").count() == len(visits)
    gold_text = " ".join(
        str(r.asDict())
        for t in ("gold.scale_scores", "silver.survey_values")
        for r in lake.read(t).limit(100000).collect()
    )
    for name in export.loc[export.name != "", "name"].head(50):
        assert name not in gold_text
    links = {r.participant_key: r.person_key for r in lake.read("silver.survey_participant").collect()}
    assert links[_pseudonym("survey:omicslake_study", "S0007")] == _pseudonym("person", "patient-0006")
    scores = lake.read("gold.scale_scores").where("scale = 'anxiety' AND subscale = 'total'")
    assert scores.where(F.col("score").isNotNull()).count() == len(
        [1 for e in S.EVENTS for _, row in _keyed_items(export, "anxiety", e).iterrows() if row.isna().sum() <= 1]
    )
    # response dates (conf/scales event_date_fields), from the export: the consent date at baseline, the
    # first visit's date at follow-up (the answers' own instance 1)
    first_visit = export[(export.redcap_repeat_instrument == "visit") & (export.redcap_repeat_instance == "1")]
    want = {
        (_pseudonym("survey:omicslake_study", r), "baseline_arm_1"): d
        for r, d in zip(export.record_id, export.consent_date, strict=True)
        if d
    } | {
        (_pseudonym("survey:omicslake_study", r), "followup_arm_1"): d
        for r, d in zip(first_visit.record_id, first_visit.visit_date, strict=True)
    }
    got = {(r.participant_key, r.event): str(r.response_date) for r in scores.collect()}
    assert got == {k: want[k] for k in got} and len(got) == len(scores.collect())


def test_generator_is_deterministic_and_uses_its_own_stream(tmp_path: Path) -> None:
    a = S.generate(["p1", "p2", "p3"], 9, tmp_path / "a")
    b = S.generate(["p1", "p2", "p3"], 9, tmp_path / "b")
    for f in ("dictionary.csv", "records.csv", "linkage.csv"):
        assert (tmp_path / "a" / a["folder"] / f).read_bytes() == (tmp_path / "b" / b["folder"] / f).read_bytes()
    c = S.generate(["p1", "p2", "p3"], 10, tmp_path / "c")
    assert (tmp_path / "c" / c["folder"] / "records.csv").read_bytes() != (
        tmp_path / "a" / a["folder"] / "records.csv"
    ).read_bytes()


def test_phi_scan_finds_no_survey_identifier_past_bronze(spark: SparkSession, study: dict[str, Any]) -> None:
    from phi_scan import identifiers, kinds, scan, scan_lake, survey_identifiers

    lake = Lake(spark, study["cfg"])
    records = lake.read("bronze.survey_records")
    ids = identifiers(survey_identifiers(records, lake.read("bronze.survey_dictionary"))).cache()
    found = kinds(ids)
    # record ids, names, phone numbers and dates of birth of every participant; the notes written
    assert found["survey_record_id"] == PATIENTS and found["survey_identifier"] >= 2 * PATIENTS
    assert found["survey_note"] > 0
    assert scan(records, ids)  # the scan can find them: they are all in bronze
    assert scan_lake(lake, ids) == {}
    ids.unpersist()


def test_completeness_by_site_and_report_sections(spark: SparkSession, study: dict[str, Any]) -> None:
    """Completeness per event, instrument and site (the data access group of every export row) equals the
    generator's truth per site in the manifest: participants, follow-ups, the answers it left empty."""
    from omicslake.report import survey as report

    lake = Lake(spark, study["cfg"])
    m = study["manifest"]
    sites = m["sites"]
    rows = lake.read("gold.survey_completeness").collect()  # a few rows per event, instrument and site
    qa = {(r.event, r.instrument, r.site): r for r in rows}
    assert len(qa) == len(rows) and {r.site for r in rows} == set(S.SITES)  # every record has its site
    assert sum(t["participants"] for t in sites.values()) == PATIENTS
    items = sum(len(s["items"]) for s in S.SCALES.values())
    for site, truth in sites.items():
        assert truth["participants"] > 0
        for event, n in zip(S.EVENTS, (truth["participants"], truth["followed_up"]), strict=True):
            blank = truth["missing_items"][event]
            r = qa[(event, "wellbeing", site)]
            assert (r.participants, r.missing, r.answered, r.not_shown, r.invalid) == (
                n,
                blank,
                n * items - blank,
                0,
                0,
            )
            assert r.completeness == pytest.approx(1 - blank / (n * items), abs=1e-12)
            assert r.forms_complete_share == 1.0
        enrol = qa[("baseline_arm_1", "enrolment", site)]
        assert enrol.participants == truth["participants"]
    enrol_rows = [r for k, r in qa.items() if k[:2] == ("baseline_arm_1", "enrolment")]
    assert sum(r.not_shown for r in enrol_rows) == PATIENTS - m["smokers"]  # cigs_per_day hidden
    tables = lake.names()
    done = report.completeness(lake, tables)
    scales = report.scales(lake, tables)
    assert done.found == {"survey_forms": len(qa)} and "wellbeing" in done.html
    assert "<th>site</th>" in done.html and all(f"<td>{s}</td>" in done.html for s in S.SITES)
    assert scales.found == {"scales": 2, "loading_heatmaps": 2, "item_distributions": 2}
    assert "Test-retest" in scales.html and scales.html.count("data:image/png") == 4


def test_visit_windows_and_enrolment_equal_the_export_worked_by_hand(
    spark: SparkSession, study: dict[str, Any]
) -> None:
    """The default window (follow-up visit_date 180..540 days after the baseline consent_date) and the
    enrolment months, computed with pandas straight from the export, equal the gold tables."""
    from omicslake.report import survey as report

    lake = Lake(spark, study["cfg"])
    export = study["export"]
    consent = export[export.consent_date != ""].set_index("record_id").consent_date.map(pd.Timestamp)
    visits = export[(export.redcap_repeat_instrument == "visit") & (export.visit_date != "")]
    days = [(pd.Timestamp(v) - consent[r]).days for r, v in zip(visits.record_id, visits.visit_date, strict=True)]
    expected = {
        "early": sum(d < 180 for d in days),
        "late": sum(d > 540 for d in days),
        None: sum(180 <= d <= 540 for d in days),
    }
    got = lake.read("gold.survey_visit_windows").groupBy("deviation").count().collect()
    assert {r.deviation: r["count"] for r in got} == {k: v for k, v in expected.items() if v}
    assert expected["early"] + expected["late"] > 0  # the generated dates do cross the window
    months = consent.dt.to_period("M").value_counts()
    gold = {(r.month.year, r.month.month): r.enrolled for r in lake.read("gold.survey_enrolment").collect()}
    assert gold == {(p.year, p.month): int(n) for p, n in months.items()}
    qa = report.study_qa(lake, lake.names())
    assert qa.found["visit_windows"] == 1 and qa.found["enrolment_months"] == len(months)
    assert "Visit windows" in qa.html and "Enrolment" in qa.html


def test_survey_leaves_every_other_generated_file_unchanged(spark: SparkSession, tmp_path: Path) -> None:
    """The generator with and without the study: the same files byte for byte, besides the study's
    folder and the manifest's survey section (synth/survey.py draws from its own stream)."""
    import json

    from conftest import generate_cli

    def digests(folder: Path) -> dict[str, str]:
        out = {}
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "redcap" not in p.parts:
                data = p.read_bytes()
                if p.name == "manifest.json":
                    m = json.loads(data)
                    m.pop("seconds")
                    m.pop("survey", None)
                    data = json.dumps(m, sort_keys=True).encode()
                out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
        return out

    args = ("--patients", "60", "--samples", "0")
    with_survey = generate_cli(tmp_path, tmp_path / "with", 3, *args)
    without = generate_cli(tmp_path, tmp_path / "without", 3, *args, "--set", "jobs.generate.survey_share=0")
    assert "survey" not in without and not (tmp_path / "without" / "redcap").exists()
    assert 0 < with_survey["survey"]["participants"] < 60
    linked = (tmp_path / "with" / "redcap" / "omicslake_study" / "linkage.csv").read_text().splitlines()[1:]
    patients = {
        line.split(",")[0]
        for line in (tmp_path / "with" / "synthea" / "batch_001" / "patients.csv").read_text().splitlines()[1:]
    }
    assert {line.split(",")[1] for line in linked} <= patients  # a subset of the generated patients
    assert digests(tmp_path / "with") == digests(tmp_path / "without")
