"""Scale scores and omics values as point-in-time cohort features, on hand-made tables whose answers
are worked out by hand (tests/data/scale_features/*/README.md; the omics numbers in the comments)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scenario import folder, read_csv

from omicslake.features import cohort as C
from omicslake.features import patient as P
from omicslake.features.spec import FeatureSpec, IndexRule, OmicsFeatureSpec
from omicslake.omics.features import long_values, person_features

SCORES = "project string, participant_key string, event string, instance int, scale string, subscale string, score double, response_date date"
PARTICIPANTS = "project string, participant_key string, person_key string"
PERSON = (
    "person_key string, birth_date date, death_date date, age_90_plus boolean, gender_concept_id int, "
    "race_source_value string, ethnicity_source_value string"
)
SCALE_COLS = [
    "scale_mood_total_last_365d",
    "scale_mood_total_mean_365d",
    "scale_mood_total_count_365d",
    "scale_mood_affect_last_365d",
]


def _scale_inputs(spark: SparkSession) -> tuple[DataFrame, DataFrame, DataFrame]:
    case = folder("scale_features", "point_in_time")
    ev = C.scale_events(
        read_csv(spark, case / "scores.csv", SCORES), read_csv(spark, case / "participants.csv", PARTICIPANTS)
    )
    cohort = read_csv(spark, case / "cohort.csv", "person_key string, index_date date")
    person = spark.createDataFrame(
        [(p, dt.date(1960, 1, 1), None, False, 8532, "white", "nonhispanic") for p in ("P1", "P2", "P3")], PERSON
    )
    return ev, cohort, person


def test_scale_scores_count_only_on_or_before_the_index_scenario(spark: SparkSession) -> None:
    ev, cohort, person = _scale_inputs(spark)
    spec = FeatureSpec(
        scales=("mood", "mood.affect"),
        scale_windows=(365,),
        scale_stats=("last", "mean", "count"),
        genetics=False,
        visit_classes=(),
    )
    got = P.features(cohort, ev, person, spec).select("person_key", *SCALE_COLS)
    want = read_csv(
        spark,
        folder("scale_features", "point_in_time") / "expected.csv",
        "person_key string, scale_mood_total_last_365d double, scale_mood_total_mean_365d double, "
        "scale_mood_total_count_365d bigint, scale_mood_affect_last_365d double",
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    # strictly before the index: P1's index-day 10 no longer counts
    strict = P.features(cohort, ev, person, FeatureSpec(**{**spec.__dict__, "scale_index_day": False}))
    p1 = strict.where("person_key = 'P1'").first()
    assert (p1.scale_mood_total_last_365d, p1.scale_mood_total_count_365d) == (8.0, 1)


def test_a_scale_score_threshold_as_an_index_event(spark: SparkSession) -> None:
    """The first mood total of 9 or more: P1's 10 on 2020-06-30 (8 and 5 are lower; 12 is later); P2's 7
    is below; c1's 30 belongs to nobody."""
    ev, _, _ = _scale_inputs(spark)
    rule = IndexRule(domain="scale", classes=("mood.total",), value=(9, None))
    got = {r.person_key: r.index_date for r in C.index_dates(ev, rule).collect()}
    assert got == {"P1": dt.date(2020, 6, 30)}


OMICS = "feature_id string, values array<double>, mean double, variance double"
SAMPLES = (
    "sample_id string, position int, person_key string, consent boolean, passed boolean, sample_meta map<string,string>"
)


def _omics(spark: SparkSession) -> DataFrame:
    omics = spark.createDataFrame(
        [
            # positions 0..4; mean and sample variance over the present values, by hand:
            # g1 (1, 2, 3, 4): mean 2.5, variance (2.25 + .25 + .25 + 2.25) / 3 = 5/3
            ("g1", [1.0, 2.0, 3.0, None, 4.0], 2.5, 5 / 3),
            # g2 (10..50): mean 30, variance (400 + 100 + 0 + 100 + 400) / 4 = 250
            ("g2", [10.0, 20.0, 30.0, 40.0, 50.0], 30.0, 250.0),
            ("g3", [7.0, 7.0, 7.0, 7.0, 7.0], 7.0, 0.0),
        ],
        OMICS,
    )
    samples = spark.createDataFrame(
        [
            ("S1", 0, "P1", True, True, {"collection_date": "2019-06-01"}),
            ("S2", 1, "P1", True, True, {"collection_date": "2020-02-01"}),  # after P1's index: never
            ("S3", 2, "P2", False, True, {"collection_date": "2019-01-01"}),  # not consented
            ("S4", 3, "P2", True, True, {}),  # undated
            ("S7", 4, "P1", True, True, {"collection_date": "2018-01-01T08:00"}),  # older than S1
            ("S5", None, "P3", True, False, {"collection_date": "2019-01-01"}),  # failed QC
        ],
        SAMPLES,
    )
    return long_values(omics, samples, ["g1", "g2"], "collection_date")


def test_omics_features_from_the_latest_consented_sample_before_the_index(spark: SparkSession) -> None:
    long = _omics(spark)
    cohort = spark.createDataFrame(
        [(p, dt.date(2020, 1, 1)) for p in ("P1", "P2", "P3")], "person_key string, index_date date"
    )
    spec = OmicsFeatureSpec(features=("g1", "g2"), signatures={"sig": ("g1", "g2")})
    got = {r.person_key: r for r in person_features(cohort, long, "rna", spec).collect()}
    # P1: S1 (2019-06-01; S2 is after the index, S7 older). z(g1) = (1 - 2.5) / sqrt(5/3), z(g2) = (10 - 30) / sqrt(250)
    z1, z2 = -1.5 / math.sqrt(5 / 3), -20 / math.sqrt(250)
    p1 = got["P1"]
    assert (p1.has_omics_rna, p1.omics_rna_g1, p1.omics_rna_g2) == (1, 1.0, 10.0)
    assert p1.omics_rna_sig_sig == pytest.approx((z1 + z2) / 2, abs=1e-12)
    # P2: S3 is not consented; undated S4 is used: g1 missing there, the signature is g2's z alone
    p2 = got["P2"]
    assert (p2.has_omics_rna, p2.omics_rna_g1, p2.omics_rna_g2) == (1, None, 40.0)
    assert p2.omics_rna_sig_sig == pytest.approx(10 / math.sqrt(250), abs=1e-12)
    # P3: its only sample failed QC
    assert (got["P3"].has_omics_rna, got["P3"].omics_rna_g2, got["P3"].omics_rna_sig_sig) == (0, None, None)
    # a 100-day window leaves P1 without a sample (S1 is 214 days old); undated: drop leaves P2 without one
    strict = OmicsFeatureSpec(features=("g2",), window=100, undated="drop")
    got = {r.person_key: r.has_omics_rna for r in person_features(cohort, long, "rna", strict).collect()}
    assert got == {"P1": 0, "P2": 0, "P3": 0}
    # an absent assay: the columns exist, null
    none = person_features(cohort, None, "rna", spec).where(F.col("person_key") == "P1").first()
    assert (none.has_omics_rna, none.omics_rna_g1, none.omics_rna_sig_sig) == (0, None, None)
