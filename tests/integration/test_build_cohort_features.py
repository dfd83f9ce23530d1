"""build_cohort through the job (``execute``) on a tiny hand-made lake: scale scores (gold.scale_scores of
linked participants) and omics values (silver.omics_rna of consented, QC-passed samples) reach
gold.features_<cohort> point-in-time, and a scale score can be the outcome. The scale inputs are the
scenario tests/data/scale_features/point_in_time (worked out by hand in its README); the omics numbers
are worked out in the comments. The unit tests (tests/unit/test_cohort_scales_omics.py) check the
transforms; this one checks the job's wiring: which tables it reads, how it links, dates and joins them."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.contracts import load_contract
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

COHORT = """
name: scales_omics
index: {domain: condition, codes: [IDX]}
outcome: {domain: scale, classes: [mood.total], value: [11, null], window: [1, 365]}
features:
  genetics: false
  visit_classes: []
  condition_groups: {htn: [HTN]}
  scales: [mood, mood.affect]
  scale_windows: [365]
  scale_stats: [last, mean, count]
  omics:
    rna: {features: [g1, g2], signatures: {sig: [g1, g2]}}
"""
CASE = Path(__file__).resolve().parents[1] / "data" / "scale_features" / "point_in_time"
# the persons' index dates (the first IDX condition): the scenario's cohort.csv
INDEX = {"P1": dt.date(2020, 6, 30), "P2": dt.date(2020, 1, 1), "P3": dt.date(2020, 1, 1)}


def _typed(spark: SparkSession, rows: list[dict[str, object]], table: str) -> DataFrame:
    """Rows (column -> value, the rest null) as a DataFrame with ``table``'s contract schema."""
    schema = load_contract(table).struct()
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def _csv(spark: SparkSession, name: str, schema: str) -> DataFrame:
    """A CSV of the scenario with an explicit schema (an empty field is null)."""
    return spark.read.csv(str(CASE / name), header=True, schema=schema, enforceSchema=False, mode="FAILFAST")


def _write_lake(spark: SparkSession, lake: Lake) -> None:
    book = {"_source_file": "hand", "_line": 1, "_batch_id": "b", "_row_hash": "h", "run_id": "seed"}
    people = [
        {"person_key": p, "birth_date": dt.date(1960, 1, 1), "age_90_plus": False, "gender_concept_id": 8532, **book}
        for p in INDEX
    ]
    conditions = [
        {"condition_key": f"{p}-idx", "person_key": p, "condition_concept_id": 0, "condition_source_value": "IDX",
         "condition_start_date": d, **book}
        for p, d in INDEX.items()
    ] + [
        # hypertension: P1's the day before the index (counts), P2's on its index day (strictly before: not)
        {"condition_key": "P1-htn", "person_key": "P1", "condition_concept_id": 0, "condition_source_value": "HTN",
         "condition_start_date": dt.date(2020, 6, 29), **book},
        {"condition_key": "P2-htn", "person_key": "P2", "condition_concept_id": 0, "condition_source_value": "HTN",
         "condition_start_date": dt.date(2020, 1, 1), **book},
    ]  # fmt: skip
    scores = _csv(
        spark,
        "scores.csv",
        "project string, participant_key string, event string, instance int, scale string, subscale string, "
        "score double, response_date date",
    ).withColumns({"items_answered": F.lit(6), "items": F.lit(6), "run_id": F.lit("seed")})
    participants = _csv(
        spark, "participants.csv", "project string, participant_key string, person_key string"
    ).withColumn("run_id", F.lit("seed"))
    omics = [
        # positions 0..4 of the samples below; mean and sample variance over the values present:
        # g1 (1, 2, 3, 4): mean 2.5, variance 5/3; g2 (10..50): mean 30, variance 250
        {"feature_id": "g1", "values": [1.0, 2.0, 3.0, None, 4.0], "mean": 2.5, "variance": 5 / 3},
        {"feature_id": "g2", "values": [10.0, 20.0, 30.0, 40.0, 50.0], "mean": 30.0, "variance": 250.0},
        {"feature_id": "g3", "values": [7.0] * 5, "mean": 7.0, "variance": 0.0},
    ]
    omics = [
        {**o, "assay": "rna", "assay_type": "counts", "scaled": o["values"], "missing_fraction": 0.0, "run_id": "seed"}
        for o in omics
    ]
    samples = [
        ("S1", 0, "P1", True, True, {"collection_date": "2019-06-01"}),  # older than S2
        ("S2", 1, "P1", True, True, {"collection_date": "2020-02-01"}),  # P1's latest before its index: used
        ("S3", 2, "P2", False, True, {"collection_date": "2019-01-01"}),  # not consented
        ("S4", 3, "P2", True, True, {}),  # undated: P2's only usable sample
        ("S6", 4, "P1", True, True, {"collection_date": "2020-07-15"}),  # after P1's index: never
        ("S5", None, "P3", True, False, {"collection_date": "2019-01-01"}),  # failed QC
    ]
    sample_rows = [
        {"sample_id": s, "position": pos, "person_key": p, "consent": c, "passed": ok, "sample_meta": meta,
         "total": 1.0, "detected": 3, "missing_fraction": 0.0, "source_file": "hand", "run_id": "seed"}
        for s, pos, p, c, ok, meta in samples
    ]  # fmt: skip
    lake.write(_typed(spark, people, "silver.person"), "silver.person", mode="overwrite")
    lake.write(
        _typed(spark, conditions, "silver.condition_occurrence"), "silver.condition_occurrence", mode="overwrite"
    )
    lake.write(
        scores.select(*load_contract("gold.scale_scores").struct().fieldNames()), "gold.scale_scores", mode="overwrite"
    )
    lake.write(participants, "silver.survey_participant", mode="overwrite")
    lake.write(_typed(spark, omics, "silver.omics_rna"), "silver.omics_rna", mode="overwrite")
    lake.write(_typed(spark, sample_rows, "silver.omics_samples_rna"), "silver.omics_samples_rna", mode="overwrite")


def test_build_cohort_job_wires_scale_and_omics_features_point_in_time(
    spark: SparkSession, cfg: Config, tmp_path: Path
) -> None:
    spec = tmp_path / "scales_omics.yaml"
    spec.write_text(COHORT)
    cfg = cfg.replace(
        **{
            "jobs.build_cohort.cohorts": [str(spec)],
            "jobs.build_cohort.end_of_data": "2021-12-31",
            "jobs.build_cohort.table1": False,
        }
    )
    _write_lake(spark, Lake(spark, cfg, run_id="seed"))
    run = execute(spark, cfg, "build_cohort", run_id="b1")
    assert run.status == "succeeded", run.metrics
    lake = Lake(spark, cfg)
    got = {r.person_key: r for r in lake.read("gold.features_scales_omics").collect()}  # three rows
    assert set(got) == set(INDEX) and {p: r.index_date for p, r in got.items()} == INDEX
    want_scales = {  # the scenario's expected.csv, worked out by hand (its README)
        "P1": (10.0, 9.0, 2, 3.0),
        "P2": (7.0, 7.0, 1, None),
        "P3": (None, None, 0, None),
    }
    for p, (last, mean, count, affect) in want_scales.items():
        r = got[p]
        actual = (r.scale_mood_total_last_365d, r.scale_mood_total_mean_365d, r.scale_mood_total_count_365d)
        assert actual == (last, mean, count), p
        assert r.scale_mood_affect_last_365d == affect, p
    # P1: S2 (2020-02-01; S6 is after the index, S1 older): g1 = 2, g2 = 20
    z = (2 - 2.5) / math.sqrt(5 / 3), (20 - 30) / math.sqrt(250)
    p1 = got["P1"]
    assert (p1.has_omics_rna, p1.omics_rna_g1, p1.omics_rna_g2) == (1, 2.0, 20.0)
    assert p1.omics_rna_sig_sig == pytest.approx(sum(z) / 2, abs=1e-12)
    # P2: S3 not consented, undated S4 used: g1 missing there, the signature is g2's z alone
    p2 = got["P2"]
    assert (p2.has_omics_rna, p2.omics_rna_g1, p2.omics_rna_g2) == (1, None, 40.0)
    assert p2.omics_rna_sig_sig == pytest.approx(10 / math.sqrt(250), abs=1e-12)
    p3 = got["P3"]  # its only sample failed QC
    assert (p3.has_omics_rna, p3.omics_rna_g1, p3.omics_rna_g2, p3.omics_rna_sig_sig) == (0, None, None, None)
    # EHR features beside them: only P1's hypertension is strictly before its index
    assert {p: r.cond_htn for p, r in got.items()} == {"P1": 1, "P2": 0, "P3": 0}
    # the outcome, a mood total of 11 or more 1..365 days after the index: P1's 12 on 2020-07-01 (day 1);
    # P2's 20 is undated, c1's 30 belongs to nobody
    labels = {r.person_key: (r.label, r.outcome_date) for r in lake.read("gold.cohort_scales_omics").collect()}
    assert labels == {"P1": (1, dt.date(2020, 7, 1)), "P2": (0, None), "P3": (0, None)}
    assert {p: r.label for p, r in got.items()} == {"P1": 1, "P2": 0, "P3": 0}
