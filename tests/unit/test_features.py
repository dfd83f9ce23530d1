"""Cohort and feature transforms on tiny hand-made patients whose answers are worked out by hand.

Index date 2020-01-01 throughout. ``d`` below is days before the index (d = 1: 2019-12-31).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.errors import ConfigError
from omicslake.features import cohort as C
from omicslake.features import patient as P
from omicslake.features.spec import CharlsonGroup, CohortSpec, Criterion, FeatureSpec, IndexRule, Outcome, load_cohort
from omicslake.features.table1 import table1

INDEX = dt.date(2020, 1, 1)
EV_SCHEMA = "person_key string, domain string, code string, concept_id int, class string, start_date date, end_date date, value double"
PERSON_SCHEMA = (
    "person_key string, birth_date date, death_date date, age_90_plus boolean, gender_concept_id int, "
    "race_source_value string, ethnicity_source_value string"
)
SPEC = FeatureSpec(
    labs=("hba1c",),
    lab_windows=(365, 1095),
    condition_groups={"chf": ("88805009",)},
    charlson={
        "chf": CharlsonGroup(1, ("88805009",)),
        "renal": CharlsonGroup(2, ("433144002",)),
        "malignancy": CharlsonGroup(2, ("254637007",)),
    },
    drug_classes={"biguanide": ("860975",)},
    drug_window=365,
    utilisation_window=365,
    visit_classes=("inpatient", "outpatient"),
    genetics=False,
)


def day(d_before: int) -> dt.date:
    return INDEX - dt.timedelta(days=d_before)


def ev(
    person: str, domain: str, code: str, d_before: int, value: float | None = None, cls: str | None = None
) -> tuple[Any, ...]:
    return (person, domain, code, 0, cls, day(d_before), None, value)


BASE_EVENTS = [
    # P1: HbA1c 6.0 at d=1, 5.0 at d=365 (window edge, in), 4.0 at d=366 (out of 365, in 1095),
    # 9.0 on the index day and 10.0 after it (neither may count)
    ev("P1", "measurement", "4548-4", 1, 6.0, "hba1c"),
    ev("P1", "measurement", "4548-4", 365, 5.0, "hba1c"),
    ev("P1", "measurement", "4548-4", 366, 4.0, "hba1c"),
    ev("P1", "measurement", "4548-4", 0, 9.0, "hba1c"),
    ev("P1", "measurement", "4548-4", -1, 10.0, "hba1c"),
    # Charlson: CHF (1) years ago, CKD 3 (2) half a year ago, cancer (2) after the index: score 3
    ev("P1", "condition", "88805009", 3000),
    ev("P1", "condition", "433144002", 214),
    ev("P1", "condition", "254637007", -4),
    # metformin at d=365 (in) and d=366 (out); an inpatient stay at d=30, an outpatient visit at d=400 (out)
    ev("P1", "drug", "860975", 365),
    ev("P1", "drug", "860975", 366),
    ev("P1", "visit", "32485007", 30, cls="inpatient"),
    ev("P1", "visit", "185345009", 400, cls="outpatient"),
    # P2: only a cancer diagnosis on the index day (not before it): no Charlson points
    ev("P2", "condition", "254637007", 0),
]


def persons(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            ("P1", dt.date(1960, 1, 1), None, False, 8532, "white", "nonhispanic"),
            ("P2", dt.date(1930, 7, 1), dt.date(2020, 6, 30), True, 8507, None, "hispanic"),
        ],
        PERSON_SCHEMA,
    )


def cohort_of(spark: SparkSession, *people: str) -> DataFrame:
    return spark.createDataFrame([(p, INDEX) for p in people], "person_key string, index_date date")


def build(spark: SparkSession, events: list[tuple[Any, ...]], spec: FeatureSpec = SPEC) -> DataFrame:
    return P.features(cohort_of(spark, "P1", "P2"), spark.createDataFrame(events, EV_SCHEMA), persons(spark), spec)


def test_lab_aggregates_and_windows_at_their_edges(spark: SparkSession) -> None:
    got = build(spark, BASE_EVENTS).where("person_key = 'P1'").first()
    assert got is not None
    assert got["lab_hba1c_last_365d"] == 6.0 and got["lab_hba1c_count_365d"] == 2
    assert got["lab_hba1c_mean_365d"] == 5.5 and got["lab_hba1c_min_365d"] == 5.0 and got["lab_hba1c_max_365d"] == 6.0
    # two points: slope = (6 - 5) / ((365 - 1) / 365.25) per year
    assert got["lab_hba1c_slope_365d"] == pytest.approx(365.25 / 364, rel=1e-12)
    assert (
        got["lab_hba1c_count_1095d"] == 3 and got["lab_hba1c_min_1095d"] == 4.0 and got["lab_hba1c_last_1095d"] == 6.0
    )
    t = -np.array([1, 365, 366]) / 365.25
    assert got["lab_hba1c_slope_1095d"] == pytest.approx(np.polyfit(t, [6.0, 5.0, 4.0], 1)[0], rel=1e-9)
    p2 = build(spark, BASE_EVENTS).where("person_key = 'P2'").first()
    assert p2 is not None and p2["lab_hba1c_last_365d"] is None and p2["lab_hba1c_count_365d"] == 0


def test_charlson_conditions_drugs_utilisation_and_demographics(spark: SparkSession) -> None:
    got = build(spark, BASE_EVENTS).select(
        "person_key",
        "female",
        "race",
        "ethnicity",
        "age_90_plus",
        "age_at_index",
        "cond_chf",
        "charlson_chf",
        "charlson_renal",
        "charlson_malignancy",
        "charlson_index",
        "drug_biguanide_count_365d",
        "visits_inpatient_365d",
        "visits_outpatient_365d",
        "visits_all_365d",
    )
    expected = got.sparkSession.createDataFrame(
        [
            ("P1", 1, "white", "nonhispanic", 0, 60.0, 1, 1, 1, 0, 3, 1, 1, 0, 1),
            ("P2", 0, "unknown", "hispanic", 1, 89.5, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


LATE = [
    ev("P1", "measurement", "4548-4", -1, 14.0, "hba1c"),
    ev("P1", "condition", "254637007", -1),
    ev("P1", "drug", "860975", -1),
    ev("P1", "visit", "32485007", -1, cls="inpatient"),
    ev("P1", "condition", "88805009", -1),
]


def test_leakage_an_event_after_index_changes_nothing_one_before_does(spark: SparkSession) -> None:
    base = build(spark, BASE_EVENTS)
    after = build(spark, BASE_EVENTS + LATE)  # one day after the index
    assert_df_equality(after, base, ignore_row_order=True, ignore_nullable=True)
    before = [(*e[:5], day(1), *e[6:]) for e in LATE]  # the same events one day before the index
    changed = build(spark, BASE_EVENTS + before).where("person_key = 'P1'").first()
    assert changed is not None
    assert (
        changed["lab_hba1c_last_365d"] == 14.0
        and changed["charlson_malignancy"] == 1
        and changed["charlson_index"] == 5
    )
    assert changed["drug_biguanide_count_365d"] == 2 and changed["visits_inpatient_365d"] == 2


def test_genetics_only_for_consented_linked_genomes(spark: SparkSession) -> None:
    link = spark.createDataFrame(
        [("S1", "P1", True), ("S2", "P2", False)], "sample_id string, person_key string, consent boolean"
    )
    pcs = spark.createDataFrame([("S1", 0.1, 0.2), ("S2", 0.3, 0.4)], "sample_id string, pc1 double, pc2 double")
    prs = spark.createDataFrame([("S1", 1.5), ("S2", 2.5)], "sample_id string, prs double")
    g = P.genetics_by_person(link, pcs, prs, 10)
    spec = FeatureSpec(genetics=True)
    got = P.features(
        cohort_of(spark, "P1", "P2"), spark.createDataFrame(BASE_EVENTS, EV_SCHEMA), persons(spark), spec, g
    ).select("person_key", "has_genome", "pc1", "pc2", "prs")
    expected = spark.createDataFrame([("P1", 1, 0.1, 0.2, 1.5), ("P2", 0, None, None, None)], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


COHORT = CohortSpec(
    name="t",
    index=IndexRule(domain="visit", codes=("162673000",), between=("2020-01-01", "2020-12-31")),
    outcome=Outcome(domain="condition", codes=("44054006",), window=(1, 365)),
    prior_observation_days=365,
    include=(Criterion(name="adult", age=(18, None)),),
    exclude=(Criterion(name="prior_t2d", domain="condition", codes=("44054006",), window=(None, 0)),),
)


def test_cohort_index_criteria_outcome_window_and_censoring(spark: SparkSession) -> None:
    w = "162673000"
    rows = [
        # A: wellness 2019-06-01 (outside `between`) and 2020-01-01 (index); T2D at index+365 (the window's edge): case
        ("A", "visit", w, day(214)),
        ("A", "visit", w, day(0)),
        ("A", "condition", "44054006", day(-365)),
        ("A", "visit", w, day(400)),
        # B: T2D at index+366, just outside the horizon: control; two wellness visits in 2020, the first is the index
        ("B", "visit", w, day(0)),
        ("B", "visit", w, day(-100)),
        ("B", "condition", "44054006", day(-366)),
        ("B", "visit", w, day(500)),
        # C: T2D on the index day: excluded (prior_t2d window ends at 0)
        ("C", "visit", w, day(0)),
        ("C", "condition", "44054006", day(0)),
        ("C", "visit", w, day(500)),
        # D: first event 100 days before the index: fails prior observation
        ("D", "visit", w, day(0)),
        ("D", "visit", "x", day(100)),
        # E: dies 200 days after the index without T2D: censored, label 0, incomplete follow-up
        ("E", "visit", w, day(0)),
        ("E", "visit", w, day(800)),
        # F: a minor (age 10 at index)
        ("F", "visit", w, day(0)),
        ("F", "visit", w, day(800)),
    ]
    events = spark.createDataFrame([(p, d, c, 0, None, t, None, None) for p, d, c, t in rows], EV_SCHEMA)
    people = spark.createDataFrame(
        [
            (p, dt.date(1970, 1, 1) if p != "F" else dt.date(2010, 1, 1), dt.date(2020, 7, 19) if p == "E" else None)
            for p in "ABCDEF"
        ],
        "person_key string, birth_date date, death_date date",
    )
    cohort, candidates = C.build_cohort(events, people, COHORT, F.lit(dt.date(2022, 12, 31)))
    got = cohort.select("person_key", "index_date", "label", "event_days", "time_days", "event", "complete_followup")
    expected = spark.createDataFrame(
        [
            ("A", INDEX, 1, 365, 365, True, True),
            ("B", INDEX, 0, None, 365, False, True),
            ("E", INDEX, 0, None, 200, False, False),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert C.attrition(candidates, COHORT) == [
        ("with_index_event", 6),
        ("alive_at_index", 6),
        ("prior_observation_365d", 5),
        ("include_adult", 4),
        ("exclude_prior_t2d", 3),
    ]


def test_readmission_index_is_the_first_discharge(spark: SparkSession) -> None:
    spec = load_cohort("readmission_30d")
    rows = [
        # stay 1: 2020-01-01 .. 2020-01-05; readmitted 2020-02-04 (30 days after discharge): case
        ("A", "inpatient", dt.date(2020, 1, 1), dt.date(2020, 1, 5)),
        ("A", "inpatient", dt.date(2020, 2, 4), dt.date(2020, 2, 6)),
        # readmitted 31 days after discharge: control
        ("B", "inpatient", dt.date(2020, 1, 1), dt.date(2020, 1, 5)),
        ("B", "inpatient", dt.date(2020, 2, 5), dt.date(2020, 2, 6)),
    ]
    events = spark.createDataFrame([(p, "visit", "32485007", 9201, c, s, e, None) for p, c, s, e in rows], EV_SCHEMA)
    people = spark.createDataFrame(
        [(p, dt.date(1950, 1, 1), None) for p in "AB"], "person_key string, birth_date date, death_date date"
    )
    cohort, _ = C.build_cohort(events, people, spec, F.lit(dt.date(2021, 1, 1)))
    got = {r.person_key: (r.index_date, r.label, r.event_days) for r in cohort.collect()}
    assert got == {"A": (dt.date(2020, 1, 5), 1, 30), "B": (dt.date(2020, 1, 5), 0, None)}


def test_table1_statistics_by_hand(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(0, 10.0, 1, "a"), (0, 20.0, 0, "b"), (1, 30.0, 1, "a"), (1, 50.0, 1, None)],
        "label int, x double, flag int, cat string",
    )
    t = {(r.variable, r.level): r for r in table1(spark, df, ["x", "flag", "cat"]).collect()}
    assert t[("n", None)].outcome_0 == "2" and t[("n", None)].outcome_1 == "2"
    # x: means 15 / 40, SDs 7.07 / 14.14: SMD = 25 / sqrt((50 + 200) / 2)
    assert t[("x", None)].smd == pytest.approx(25 / np.sqrt(125), abs=1e-4)
    assert t[("x", None)].outcome_1 == "40.0 (14.1); 30.0 [30.0, 50.0]"
    assert t[("flag", None)].outcome_0 == "1 (50.0%)" and t[("flag", None)].outcome_1 == "2 (100.0%)"
    assert (
        t[("cat", "a")].overall == "2 (50.0%)"
        and t[("cat", "a")].missing == 1
        and t[("cat", "b")].outcome_1 == "0 (0.0%)"
    )


def test_cohort_config_errors_name_the_key_and_file(tmp_path: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nindex: {domain: visit, codez: [1]}\noutcome: {domain: condition}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key 'index.codez'"):
        load_cohort(str(bad))
    bad.write_text("name: bad\nindex: {domain: visits}\noutcome: {domain: condition}\n")
    with pytest.raises(ConfigError, match=r"index.domain must be one of"):
        load_cohort(str(bad))
    with pytest.raises(ConfigError, match="known cohorts: .*t2d_incident"):
        load_cohort("no_such_cohort")
    assert load_cohort("t2d_incident").horizon == 365


def test_index_day_option_uses_the_baseline_visit_and_still_nothing_after(spark: SparkSession) -> None:
    from dataclasses import replace

    spec = replace(SPEC, index_day=True)
    got = build(spark, BASE_EVENTS + LATE, spec).where("person_key = 'P1'").first()
    assert got is not None
    # the index-day HbA1c (9.0) is now the last value; the one after (10.0, 14.0) still never counts
    assert got["lab_hba1c_last_365d"] == 9.0 and got["lab_hba1c_count_365d"] == 3 and got["lab_hba1c_max_365d"] == 9.0
    assert_df_equality(
        build(spark, BASE_EVENTS + LATE, spec),
        build(spark, BASE_EVENTS, spec),
        ignore_row_order=True,
        ignore_nullable=True,
    )
