"""The pure parts of the EHR and suite-cost benchmarks: growth per 10x data, the crossover size, the
agreement check, the replication of landing lines, the suite-cost summary, and the DuckDB conform
script's counts on a tiny Synthea input worked out by hand (no Spark)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from bench.ehr import agreement, crossover, growth_per_10x, plan, replicate_line

from suite_cost import summarize


def test_growth_per_10x_is_the_time_factor_per_decade_of_data() -> None:
    # 10k -> 100k: 10 s -> 80 s is 8x per 10x; 100k -> 1M: 80 -> 1000 s is 12.5x
    assert growth_per_10x([10_000, 100_000, 1_000_000], [10.0, 80.0, 1000.0]) == [8.0, 12.5]
    # 4x the data in 4x the time is linear: 10x per 10x whatever the step
    assert growth_per_10x([1000, 4000], [10.0, 40.0]) == [10.0]
    assert growth_per_10x([10, 100, 1000], [None, 5.0, 5.0]) == [None, 1.0]
    with pytest.raises(ValueError, match="3 sizes but 2 times"):
        growth_per_10x([1, 2, 3], [1.0, 2.0])


def test_crossover_is_the_smallest_size_from_which_spark_stays_faster() -> None:
    assert crossover([10_000, 100_000, 1_000_000], [3.0, 0.8, 0.5]) == 100_000
    assert crossover([10_000, 100_000, 1_000_000], [3.0, 0.8, 1.2]) is None  # slower again at the top
    assert crossover([10_000, 100_000, 1_000_000], [0.5, 2.0, 0.5]) == 1_000_000
    assert crossover([500], [None]) is None


def test_agreement_names_every_table_whose_silver_count_differs() -> None:
    ours = {"person": {"silver": 5, "quarantined": 1, "duplicates": 0}, "death": {"silver": 1}}
    same = agreement(ours, {"person": {"silver": 5, "quarantined": 1, "duplicates": 0}, "death": {"silver": 1}})
    assert same["silver_agrees"] and same["all_counts_agree"] and same["silver_differs"] == []
    off = agreement(ours, {"person": {"silver": 5, "quarantined": 0, "duplicates": 1}, "measurement": {"silver": 3}})
    assert not off["silver_agrees"] and off["silver_differs"] == ["death", "measurement"]
    assert not off["all_counts_agree"]
    fewer = agreement(ours, {"person": {"silver": 4, "quarantined": 1, "duplicates": 0}, "death": {"silver": 1}})
    assert fewer["silver_differs"] == ["person"] and not fewer["silver_agrees"]


def test_plan_generates_up_to_the_limit_then_replicates_exactly() -> None:
    assert plan(10_000) == (10_000, 1)
    assert plan(1_000_000) == (100_000, 10)
    assert plan(250_000) == (62_500, 4)  # 3 copies do not divide it


def test_replicate_line_suffixes_every_id_of_a_copy_alike() -> None:
    p, e = "9a570276-288f-c895-2379-9216013d21ca", "2fe0cee8-d779-9421-f952-0f0a9a6b0893"
    line = f"2015-03-01,,{p},{e},http://snomed.info/sct,22298006,Myocardial infarction\n"
    assert replicate_line(line, 0) == line
    assert replicate_line(line, 3) == f"2015-03-01,,{p}-3,{e}-3,http://snomed.info/sct,22298006,Myocardial infarction\n"


def test_suite_cost_share_is_start_seconds_over_worker_time() -> None:
    events = [
        {"event": "start", "pid": 1, "created": True, "seconds": 20.0},
        {"event": "start", "pid": 1, "created": False, "seconds": 0.5},
        {"event": "stop", "pid": 1, "seconds": 2.0},
        {"event": "start", "pid": 2, "created": True, "seconds": 19.5},
    ]
    s = summarize(events, wall_seconds=400.0, workers=2)
    assert s["sessions_started"] == 2 and s["sessions_reused"] == 1 and s["processes"] == 2
    assert s["session_start_seconds"] == 40.0 and s["session_stop_seconds"] == 2.0
    assert s["share_of_worker_time"] == 0.05 and s["share_of_wall_time"] == 0.1
    # Hail initialised on a session (in build_session or later, by the job runner) is start-up too
    later = summarize([*events, {"event": "hail", "pid": 2, "seconds": 4.0}], wall_seconds=400.0, workers=2)
    assert later["session_start_seconds"] == 44.0 and later["hail_init_seconds"] == 4.0


TINY = {
    "batch_001/patients.csv": [
        "Id,BIRTHDATE,DEATHDATE,GENDER,RACE,ETHNICITY,ZIP,STATE",
        "P1,1980-01-01,,M,white,nonhispanic,02118,MA",
        "P2,1950-05-05,2019-06-01,F,black,nonhispanic,02301,MA",
        "P3,not-a-date,,F,white,hispanic,02118,MA",  # quarantined: parseable
    ],
    "batch_001/encounters.csv": [
        "Id,START,STOP,PATIENT,ENCOUNTERCLASS,CODE,TOTAL_CLAIM_COST",
        "E1,2015-03-01T12:00:00Z,2015-03-01T13:00:00Z,P1,wellness,162673000,100.0",
        "E1,2015-03-01T12:00:00Z,2015-03-01T13:00:00Z,P1,wellness,162673000,100.0",  # duplicate
        "E2,2019-07-01T10:00:00Z,2019-07-01T11:00:00Z,P2,outpatient,185349003,50",  # after death
        "E3,2016-01-01T10:00:00Z,2016-01-01T11:00:00Z,P1",  # too few fields: a reject
        "E4,2016-02-01T10:00:00Z,2016-02-01T11:00:00Z,P9,wellness,162673000,10",  # no such person
    ],
    "batch_002/encounters.csv": [
        "Id,START,STOP,PATIENT,ENCOUNTERCLASS,CODE,TOTAL_CLAIM_COST",
        "E1,2015-03-01T12:00:00Z,2015-03-01T14:00:00Z,P1,wellness,162673000,110.0",  # the late correction wins
    ],
    "batch_001/conditions.csv": [
        "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION",
        "2015-03-01,,P1,E1,http://snomed.info/sct,44054006,Diabetes",
        "1970-01-01,,P1,E1,http://snomed.info/sct,59621000,Hypertension",  # before birth
    ],
    "batch_001/observations.csv": [
        "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
        "2015-03-01T12:00:00Z,P1,E1,laboratory,2339-0,Glucose,5.55,mmol/L,numeric",  # -> 99.9888 mg/dL
        "2015-03-01T12:00:00Z,P1,E1,laboratory,4548-4,HbA1c,25,%,numeric",  # hba1c_range
        "2015-03-01T12:00:00Z,P1,E1,vital-signs,29463-7,Body weight,80,stone,numeric",  # unit_known
        "31/02/2019 25:61,P1,E1,vital-signs,8867-4,Heart rate,70,/min,numeric",  # parseable
        "2015-03-01T12:00:00Z,P1,E1,vital-signs,8867-4,Heart rate,70,/min,numeric",
        "2015-03-01T12:00:00Z,P1,E1,vital-signs,8867-4,Heart rate,70,/min,numeric",  # duplicate
    ],
    "batch_001/medications.csv": [
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION,DISPENSES",
        "2015-03-01T12:00:00Z,,P1,E1,860975,metformin,6",
    ],
    "batch_001/procedures.csv": [
        "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION",
        "2019-07-01T10:00:00Z,,P2,E2,http://snomed.info/sct,710824005,Assessment",  # after death
    ],
}


def test_duckdb_conform_counts_on_a_tiny_input_worked_out_by_hand(tmp_path: Path) -> None:
    import duckdb
    from bench.ehr_duckdb import run

    for rel, lines in TINY.items():
        (tmp_path / "synthea" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "synthea" / rel).write_text("\n".join(lines) + "\n")
    got = run(tmp_path / "synthea", tmp_path / "out", secrets.token_hex(16), "2026-01-01", threads=1)
    assert got["counts"] == {
        "person": {"silver": 2, "quarantined": 1, "duplicates": 0},
        "death": {"silver": 1, "quarantined": 0, "duplicates": 0},
        "visit_occurrence": {"silver": 1, "quarantined": 3, "duplicates": 2},
        "condition_occurrence": {"silver": 1, "quarantined": 1, "duplicates": 0},
        "measurement": {"silver": 2, "quarantined": 3, "duplicates": 1},
        "drug_exposure": {"silver": 1, "quarantined": 0, "duplicates": 0},
        "procedure_occurrence": {"silver": 0, "quarantined": 1, "duplicates": 0},
    }
    out = tmp_path / "out"
    glucose = duckdb.sql(
        f"SELECT value_as_number, unit_source_value, unit_converted FROM '{out}/measurement.parquet' "
        "WHERE measurement_name = 'glucose'"
    ).fetchall()
    assert glucose == [(99.9888, "mg/dL", True)]
    cost = duckdb.sql(f"SELECT total_cost FROM '{out}/visit_occurrence.parquet'").fetchall()
    assert cost == [(110.0,)]  # batch_002's correction, not batch_001's row


def test_omics_peer_normalise_on_a_tiny_matrix_worked_out_by_hand() -> None:
    import math
    import statistics

    import numpy as np
    from bench.omics_peer import Thresholds, normalise

    counts = np.array([[10, 20, 30, 40], [0, 0, 1, 0], [5, 5, 5, 5]])
    r = normalise(counts, Thresholds(min_expressed_fraction=0.5))  # gene 2 is expressed in 1 of 4 samples
    assert r["library_size"].tolist() == [15, 25, 36, 45] and r["detected"].tolist() == [2, 2, 3, 2]
    assert r["passing"].all() and r["kept"].tolist() == [True, False, True]
    # two genes with every count > 0: gene 3's ratio to its geometric mean is 1, so the median of the
    # two log ratios is half gene 1's: sf = sqrt(count / geometric mean of 10, 20, 30, 40)
    gm = (10 * 20 * 30 * 40) ** 0.25
    np.testing.assert_allclose(r["size_factor"], [math.sqrt(c / gm) for c in (10, 20, 30, 40)], rtol=1e-12)
    want = [
        [math.log2((c + 0.5) / (lib + 1) * 1e6) for c, lib in zip(row, (15, 25, 36, 45), strict=True)]
        for row in ([10, 20, 30, 40], [5] * 4)
    ]
    np.testing.assert_allclose(r["log2cpm"], want, rtol=1e-12)
    np.testing.assert_allclose(r["mean"], [statistics.fmean(w) for w in want], rtol=1e-12)
    np.testing.assert_allclose(r["variance"], [statistics.variance(w) for w in want], rtol=1e-12)
    # a library-size floor drops sample 1 (15 reads), and the expressed share is over the rest
    r2 = normalise(counts, Thresholds(min_library_size=20, min_expressed_fraction=0.3))
    assert r2["passing"].tolist() == [False, True, True, True] and r2["kept"].tolist() == [True, True, True]


def test_omics_compare_names_what_differs_between_the_peer_and_silver() -> None:
    import numpy as np
    from bench.omics import compare

    peer = {
        "kept": np.array(["G1", "G3"]),
        "samples": np.array(["S1", "S2"]),
        "passing": np.array([True, True]),
        "size_factor": np.array([0.9, 1.1]),
        "mean": np.array([3.0, 4.0]),
        "variance": np.array([0.5, 0.25]),
        "check_ids": np.array(["G1"]),
        "check_values": np.array([[2.5, 3.5]]),
    }
    ours = {
        "kept": ["G3", "G1"],
        "passing": {"S2": True, "S1": True},
        "size_factor": {"S1": 0.9, "S2": 1.1},
        "mean": {"G1": 3.0, "G3": 4.0},
        "variance": {"G1": 0.5, "G3": 0.25},
        "values": {"G1": [2.5, 3.5]},
    }
    assert compare(peer, ours) == []
    assert compare(peer, {**ours, "mean": {"G1": 3.0, "G3": 4.0 + 1e-6}}) == [
        "mean differs (largest at G3: 4.000001 vs 4)"
    ]
    assert compare(peer, {**ours, "size_factor": {"S1": 0.9, "S2": 1.1000001}}) == ["size factors differ"]
    assert compare(peer, {**ours, "values": {"G1": [2.5, 3.6]}}) == ["log2 CPM of G1 differs"]
    assert compare(peer, {**ours, "values": {}}) == ["log2 CPM of G1 differs"]
    assert compare(peer, {**ours, "kept": ["G1"]}) == ["kept genes differ: 0 only ours, 1 only the peer's"]
    assert compare(peer, {**ours, "passing": {"S1": True, "S2": False}}) == ["the samples passing QC differ"]


def test_omics_memory_growth_is_peak_at_the_largest_over_the_smallest() -> None:
    from bench.omics import GROWTH_BAR, memory_growth

    small = {"inputs": {"cells": 100}, "peak_rss_gib": {"ours_tsv": 2.0, "pandas": 1.0}}
    large = {"inputs": {"cells": 400}, "peak_rss_gib": {"ours_tsv": 2.2, "pandas": 3.9}}
    g = memory_growth([large, small], ("ours_tsv", "pandas", "anndata"))
    assert g == {
        "cells_growth": 4.0,
        "peak_memory_growth": {"ours_tsv": 1.1, "pandas": 3.9, "anndata": None},
        "bounded": True,
        "bar": GROWTH_BAR,
    }
    grew = {"inputs": {"cells": 400}, "peak_rss_gib": {"ours_tsv": 2.0 * GROWTH_BAR + 0.01, "pandas": 3.9}}
    assert memory_growth([small, grew], ("ours_tsv", "pandas"))["bounded"] is False
    assert memory_growth([small], ("ours_tsv",))["bounded"] is None


def test_omics_peer_is_skipped_with_its_reason_when_it_cannot_fit() -> None:
    from bench.omics import peer_fits

    assert peer_fits(100_000_000, 4 * 2**30) is None  # 20,000 x 5,000 at 32 bytes a cell: 2.98 GiB
    why = peer_fits(400_000_000, 8 * 2**30)
    assert why == (
        "skipped: needs about 11.9 GiB (32 bytes per cell: the matrix, a float64 copy, its logs, the parser's "
        "buffers) and 8.0 GiB were available"
    )


def test_bench_append_replaces_a_size_measured_again_and_keeps_the_others() -> None:
    from bench.__main__ import merge_runs

    old = [{"size": {"genes": 20_000, "samples": 5_000}, "v": 1}, {"size": {"genes": 5_000, "samples": 5_000}, "v": 1}]
    new = [{"size": {"genes": 20_000, "samples": 5_000}, "v": 2}, {"size": {"genes": 80_000, "samples": 5_000}, "v": 2}]
    assert [(r["size"]["genes"], r["v"]) for r in merge_runs(old, new)] == [(5_000, 1), (20_000, 2), (80_000, 2)]


def test_measured_samples_the_process_tree(tmp_path: Path) -> None:
    """bench.common.measured (every benchmark's process sampler): a child that holds 300 MB for a while
    shows at least that in its tree's and its largest process's peak, and its exit code comes back."""
    import sys

    from bench.common import measured

    code = "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5); raise SystemExit(3)"
    m = measured([sys.executable, "-c", code], tmp_path / "child.log")
    assert m.code == 3 and m.seconds >= 1.5
    assert m.tree >= m.biggest >= 300 * 2**20
    assert m.cpu > 0 and m.record()["peak_rss_gib"] >= 0.29


def test_mediation_coverage_counts_the_intervals_holding_the_planted_effect() -> None:
    """bench.mediation_coverage's summary on three hand-made seeds: coverage per fit and effect with its
    Wilson interval (worked out by hand for 2 of 3: centre 0.5731, half-width 0.3654), and the mean error."""
    from bench.mediation_coverage import EFFECTS, seeds_arg, summary

    def fit(lo: float, hi: float, est: float) -> dict[str, dict[str, float]]:
        return {k: {"estimate": est, "lower": lo, "upper": hi} for k in EFFECTS}

    truth = {k: -0.05 for k in EFFECTS}
    rows = [
        {"truth": truth, "generator": fit(-0.1, 0.0, -0.04), "ehr": fit(-0.1, 0.0, -0.04)},
        {"truth": truth, "generator": fit(-0.2, -0.06, -0.13), "ehr": fit(-0.1, -0.05, -0.07)},  # a miss; a bound
        {"truth": truth, "generator": fit(-0.06, -0.04, -0.05), "ehr": fit(-0.06, -0.04, -0.05)},
    ]
    s = summary(rows)
    assert s["generator"]["nde"]["covered"] == 2 and s["ehr"]["nde"]["covered"] == 3
    assert s["generator"]["nde"]["coverage_ci"] == [0.208, 0.939]
    assert abs(s["generator"]["total"]["mean_error"] - (0.01 - 0.08 + 0.0) / 3) < 1e-12
    assert seeds_arg("1-3,42") == [1, 2, 3, 42]
