"""causal.population: a study's population from lake-shaped tables, worked out by hand on six
persons (window, both drugs, death, drug stop, end of data, outcomes before the index), and the
study file's checks (each error names the file and the key)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.causal.population import load_study, population, spec_from_dict
from omicslake.errors import ConfigError

D0 = dt.date(2019, 3, 1)  # every cohort index
END = dt.date(2020, 3, 1)  # end of data: 366 days after D0


def day(n: int) -> dt.date:
    return D0 + dt.timedelta(days=n)


def ts(n: int) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(9, 30))


RAW: dict[str, Any] = {
    "name": "toy",
    "cohort": "c",
    "target": {"name": "new", "codes": ["T"]},
    "comparator": {"name": "old", "codes": ["C"]},
    "exposure_window": [0, 30],
    "covariates": {"age": "age_at_index", "x": "lab_x"},
    "outcomes": {"stroke": ["S1", "S2"], "nc": ["N"]},
    "design": {
        "covariates": ["age", "x"],
        "outcomes": ["stroke"],
        "negative_controls": ["nc"],
        "incidence_by": ["sex"],
    },
}


def test_population_by_hand(spark: SparkSession) -> None:
    spec = spec_from_dict(RAW, "toy.yaml")
    cohort = spark.createDataFrame([(f"p{i}", D0) for i in (1, 2, 3, 4, 5, 6, 8)], "person_key string, index_date date")
    features = spark.createDataFrame(
        [
            ("p1", 61.0, 1.0),
            ("p2", 45.5, 2.0),
            ("p3", 50.0, 3.0),
            ("p4", 70.0, 4.0),
            ("p5", 80.0, None),
            ("p6", 30.0, 6.0),
            ("p8", 55.0, 8.0),
        ],
        "person_key string, age_at_index double, lab_x double",
    )
    drugs = spark.createDataFrame(
        [
            ("p1", "T", ts(0), ts(200)),  # target at the index, stops at day 200
            ("p1", "C", ts(250), None),  # a switch after the drug stopped changes nothing
            ("p2", "C", ts(10), None),  # comparator 10 days after the cohort index, no stop
            ("p2", "T", ts(320), None),  # a switch to the target drug on day 320 ends the time at risk
            ("p3", "T", ts(5), None),  # both drugs on the first day: left out
            ("p3", "C", ts(5), None),
            ("p4", "T", ts(31), None),  # outside the 0..30 window
            ("p5", "C", ts(0), None),  # a covariate unknown
            ("p6", "T", ts(-10), ts(100)),  # first exposure before the index: outside the window
            ("p6", "T", ts(3), None),
            ("p7", "T", ts(0), None),  # not in the cohort
            ("p8", "C", ts(0), None),  # dies on day 100
        ],
        "person_key string, drug_source_value string, drug_exposure_start_datetime timestamp, drug_exposure_end_datetime timestamp",
    )
    conditions = spark.createDataFrame(
        [
            ("p1", "S2", day(-30)),  # before the index: ignored
            ("p1", "S1", day(150)),  # within the time at risk: event on day 150
            ("p1", "S1", day(170)),  # a later one: the first counts
            ("p1", "N", day(250)),  # after the drug stopped (day 200): censored
            ("p2", "S1", day(300)),  # index day 10: day 290, before the end of data and death
            ("p2", "N", day(0)),  # before p2's study index (day 10): ignored
            ("p2", "X", day(20)),  # not an outcome code
            ("p8", "S1", day(120)),  # after death (quarantined in a real lake): censored at death
        ],
        "person_key string, condition_source_value string, condition_start_date date",
    )
    persons = spark.createDataFrame(
        [("p1", None, "F", "white"), ("p2", day(340), "M", None), ("p8", day(100), "M", "asian")],
        "person_key string, death_date date, gender_source_value string, race_source_value string",
    )
    pop, steps = population(cohort, features, drugs, conditions, persons, spec, F.lit(END))
    # cohort, window (p1 p2 p3 p5 p8), one drug (not p3), time at risk, covariates (not p5)
    assert [s["persons"] for s in steps] == [7, 5, 4, 4, 3]
    rows = {r["person_key"]: r.asDict() for r in pop.collect()}
    assert set(rows) == {"p1", "p2", "p8"}
    assert (rows["p8"]["follow_up_days"], rows["p8"]["stroke_days"], rows["p8"]["stroke_event"]) == (100, 100, 0)
    p1, p2 = rows["p1"], rows["p2"]
    assert (p1["target"], p1["index_date"], p1["follow_up_days"]) == (1, D0, 200)  # drug stop
    assert (p1["stroke_days"], p1["stroke_event"], p1["nc_days"], p1["nc_event"]) == (150, 1, 200, 0)
    assert (p1["age"], p1["x"], p1["sex"], p1["race"], p1["age_band"], p1["index_year"]) == (
        61.0,
        1.0,
        "F",
        "white",
        "60s",
        2019,
    )
    # p2: index day 10; the switch (day 320) comes before death (340) and the end of data (366)
    assert (p2["target"], p2["index_date"], p2["follow_up_days"]) == (0, day(10), 310)
    assert (p2["stroke_days"], p2["stroke_event"], p2["nc_days"], p2["nc_event"]) == (290, 1, 310, 0)
    assert (p2["race"], p2["age_band"]) == ("unknown", "40s")
    assert "ldl" not in pop.columns
    # a post-index measurement (a mediator): the first value of its codes within days 60..120 of the study index
    spec_m = spec_from_dict({**RAW, "measurements": {"ldl": {"codes": ["L1", "L2"], "days": [60, 120]}}}, "toy.yaml")
    meas = spark.createDataFrame(
        [
            ("p1", "L1", ts(30), 150.0),  # day 30: before the window
            ("p1", "X9", ts(80), 999.0),  # another code
            ("p1", "L2", ts(90), 101.5),  # day 90: the first in the window
            ("p1", "L1", ts(100), 95.0),  # a later one
            ("p2", "L1", ts(65), 140.0),  # p2's index is day 10: day 55, before its window
            ("p2", "L1", ts(75), 120.0),  # day 65: counts
            ("p8", "L1", ts(200), 80.0),  # after the window: p8 has none
        ],
        "person_key string, measurement_source_value string, measurement_datetime timestamp, value_as_number double",
    )
    with_m, _ = population(cohort, features, drugs, conditions, persons, spec_m, F.lit(END), measurements=meas)
    got = {r["person_key"]: r["ldl"] for r in with_m.collect()}
    assert got == {"p1": 101.5, "p2": 120.0, "p8": None}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cohrt": "c"}, r"toy.yaml: unknown keys \['cohrt'\]"),
        ({"outcomes": {"nc": ["N"]}}, r"toy.yaml: design names outcomes \['stroke'\] that `outcomes` does not define"),
        ({"covariates": {"age": "age_at_index"}}, r"toy.yaml: design names covariates \['x'\]"),
        ({"comparator": {"name": "old", "codes": ["T"]}}, r"codes \['T'\] are in both the target and the comparator"),
        ({"design": {**RAW["design"], "outcomes": []}}, "design.outcomes is empty"),
        ({"design": {**RAW["design"], "treatment": "t"}}, "design.treatment is set by the study job"),
        ({"outcomes": {"stroke": ["S"], "nc": ["N"], "age": ["A"]}}, r"outcome names \['age'\] are also covariate"),
        ({"name": "Bad Name"}, "must be lower-case letters"),
        ({"target": {"name": "new", "codes": "T"}}, "target.codes must be a non-empty list"),
        (
            {"design": {**RAW["design"], "mediation": {"mediator": "ldl", "outcome": "stroke"}}},
            r"design.mediation.mediator 'ldl' is neither a covariate nor a measurement of the study",
        ),
        (
            {
                "measurements": {"ldl": {"codes": ["L"], "days": [60, 120]}},
                "design": {**RAW["design"], "mediation": {"mediator": "ldl", "outcome": "acs"}},
            },
            r"design.mediation.outcome 'acs' is not one of `outcomes`",
        ),
        ({"measurements": {"ldl": {"codes": ["L"], "days": 90}}}, r"measurements.ldl.days must be \[first day"),
    ],
)
def test_bad_study_files(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_from_dict({**RAW, **change}, "toy.yaml")


def test_unknown_study() -> None:
    with pytest.raises(
        ConfigError, match=r"study 'nope': .*nope.yaml does not exist; studies are \['new_vs_old_drug'\]"
    ):
        load_study("nope")


def test_stratum_weights_by_hand(spark: SparkSession) -> None:
    """Stratum 1: 3 target, 1 comparator; stratum 2: 1 target, 3 comparator (n 8, P(target) 1/2):
    weights n_s P(arm) / n_(s, arm) = 2/3 and 2 (stratum 1), 2 and 2/3 (stratum 2); a covariate equal
    to the stratum is then balanced (weighted means 1.5 and 1.5; unweighted 1.25 and 1.75)."""
    from omicslake.causal import balance, propensity

    rows = [(1, 1.0)] * 3 + [(0, 1.0)] + [(1, 2.0)] + [(0, 2.0)] * 3
    df = spark.createDataFrame(rows, "target int, x double").withColumn("ps_stratum", F.col("x").cast("int"))
    got = propensity.stratum_weights(df, "target").select("target", "ps_stratum", "stratum_weight").distinct().collect()
    want = {(1, 1): 2 / 3, (0, 1): 2.0, (1, 2): 2.0, (0, 2): 2 / 3}
    assert {(r[0], r[1]): round(r[2], 12) for r in got} == {k: round(v, 12) for k, v in want.items()}
    (b,) = balance.smd(propensity.stratum_weights(df, "target"), "target", ["x"], "stratum_weight")
    assert abs(b["mean_treated"] - 1.5) < 1e-12 and abs(b["mean_comparator"] - 1.5) < 1e-12 and abs(b["smd"]) < 1e-12
    (u,) = balance.smd(df, "target", ["x"])
    assert (u["mean_treated"], u["mean_comparator"]) == (1.25, 1.75)
