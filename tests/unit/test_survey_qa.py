"""Study completeness on a hand-made set of survey values (worked out by hand in the comments)."""

from __future__ import annotations

from pyspark.sql import SparkSession

from omicslake.survey.qa import completeness

VALUES = "project string, participant_key string, event string, instrument string, field string, field_type string, status string, value string"
SITE_VALUES = VALUES + ", site string"
QUARANTINE = "row_json string"


def test_completeness_counts_hidden_fields_as_not_expected(spark: SparkSession) -> None:
    rows = [
        # p1 at baseline: q1 answered, q2 missing, q3 hidden by branching logic, form complete
        ("s", "p1", "base", "f", "q1", "radio", "answered", "1"),
        ("s", "p1", "base", "f", "q2", "radio", "missing", None),
        ("s", "p1", "base", "f", "q3", "text", "not_shown", None),
        ("s", "p1", "base", "f", "f_complete", "form_status", "answered", "2"),
        # p2 at baseline: q1 answered, q2 answered, q3 refused (in quarantine), form incomplete
        ("s", "p2", "base", "f", "q1", "radio", "answered", "0"),
        ("s", "p2", "base", "f", "q2", "radio", "answered", "1"),
        ("s", "p2", "base", "f", "f_complete", "form_status", "answered", "0"),
        # a classic project (no event): one answer
        ("c", "p9", None, "g", "x", "text", "answered", "a"),
    ]
    q = [('{"project":"s","event":"base","instrument":"f","field":"q3","field_type":"text","raw_value":"abc"}',)]
    out = completeness(
        spark.createDataFrame([(*r, None) for r in rows], SITE_VALUES), spark.createDataFrame(q, QUARANTINE)
    )
    assert {r.site for r in out.collect()} == {None}  # no data access groups: one row per form and event
    got = {
        (r.project, r.event, r.instrument): (
            r.participants, r.answered, r.missing, r.not_shown, r.invalid, r.forms_complete_share, r.completeness
        )
        for r in out.collect()
    }  # fmt: skip
    # s/base/f: 2 participants; answered 3, missing 1, hidden 1, refused 1 -> 3 / (3 + 1 + 1) = 0.6; 1 of 2 forms complete
    assert got == {("s", "base", "f"): (2, 3, 1, 1, 1, 0.5, 0.6), ("c", None, "g"): (1, 1, 0, 0, 0, None, 1.0)}


def test_completeness_by_site_counts_each_data_access_group_apart(spark: SparkSession) -> None:
    rows = [
        # site A: p1 answers q1, leaves q2 empty; its form timestamp is bookkeeping, not a field
        ("s", "p1", "base", "f", "q1", "radio", "answered", "1", "site_a"),
        ("s", "p1", "base", "f", "q2", "radio", "missing", None, "site_a"),
        ("s", "p1", "base", "f", "f_timestamp", "form_timestamp", "answered", "2020-01-01 10:00:00", "site_a"),
        ("s", "p1", "base", "f", "f_complete", "form_status", "answered", "0", "site_a"),
        # site B: p2 and p3 answer both; p3's q2 at follow-up refused (quarantine, site B)
        ("s", "p2", "base", "f", "q1", "radio", "answered", "0", "site_b"),
        ("s", "p2", "base", "f", "q2", "radio", "answered", "1", "site_b"),
        ("s", "p2", "base", "f", "f_complete", "form_status", "answered", "2", "site_b"),
        ("s", "p3", "base", "f", "q1", "radio", "answered", "1", "site_b"),
        ("s", "p3", "base", "f", "q2", "radio", "answered", "1", "site_b"),
        ("s", "p3", "fu", "f", "q1", "radio", "answered", "1", "site_b"),
        # a record with no data access group
        ("s", "p4", "base", "f", "q1", "radio", "missing", None, None),
    ]
    q = [
        ('{"project":"s","event":"fu","instrument":"f","field":"q2","field_type":"radio","site":"site_b"}',),
        ('{"project":"s","event":"base","instrument":"f","field":"q1","field_type":"radio"}',),  # no site
    ]
    out = completeness(spark.createDataFrame(rows, SITE_VALUES), spark.createDataFrame(q, QUARANTINE))
    got = {
        (r.event, r.site): (r.participants, r.answered, r.missing, r.invalid, r.forms_complete_share, r.completeness)
        for r in out.collect()
    }
    assert got == {
        ("base", "site_a"): (1, 1, 1, 0, 0.0, 0.5),  # 1 / (1 + 1)
        ("base", "site_b"): (2, 4, 0, 0, 1.0, 1.0),  # 4 / 4; one form status (p2: Complete)
        ("fu", "site_b"): (1, 1, 0, 1, None, 0.5),  # 1 / (1 + 1 refused)
        ("base", None): (1, 0, 1, 1, None, 0.0),  # 0 / (1 missing + 1 refused)
    }


DATES = (
    "project string, participant_key string, event string, instance int, field string, status string, value_date date"
)


def test_visit_windows_flag_early_late_and_missing_dates_worked_out_by_hand(spark: SparkSession) -> None:
    import datetime as dt

    from omicslake.survey.qa import visit_windows

    d = dt.date
    rows = [
        # p1: consent 2020-01-01; visits on day 20 (early), day 100 (in), day 400 (late)
        ("s", "p1", "base", 1, "consent", "answered", d(2020, 1, 1)),
        ("s", "p1", "fu", 1, "visit", "answered", d(2020, 1, 21)),
        ("s", "p1", "fu", 2, "visit", "answered", d(2020, 4, 10)),
        ("s", "p1", "fu", 3, "visit", "answered", d(2021, 2, 4)),
        # p2: no consent date; one visit
        ("s", "p2", "fu", 1, "visit", "answered", d(2020, 3, 1)),
        # p3: consent; the visit date shown but left empty
        ("s", "p3", "base", 1, "consent", "answered", d(2020, 1, 1)),
        ("s", "p3", "fu", 1, "visit", "missing", None),
        # p4: exactly on both window edges (30 and 365 days): in
        ("s", "p4", "base", 1, "consent", "answered", d(2021, 1, 1)),
        ("s", "p4", "fu", 1, "visit", "answered", d(2021, 1, 31)),
        ("s", "p4", "fu", 2, "visit", "answered", d(2022, 1, 1)),
    ]
    out = visit_windows(spark.createDataFrame(rows, DATES), "fu", "visit", "base", "consent", 30, 365)
    got = {(r.participant_key, r.instance): (r.days, r.deviation) for r in out.collect()}
    assert got == {
        ("p1", 1): (20, "early"),
        ("p1", 2): (100, None),
        ("p1", 3): (400, "late"),
        ("p2", 1): (None, "no_anchor_date"),
        ("p3", 1): (None, "no_visit_date"),
        ("p4", 1): (30, None),
        ("p4", 2): (365, None),
    }


def test_enrolment_by_month_and_queries_from_the_quarantine_key(spark: SparkSession) -> None:
    import datetime as dt

    from omicslake.survey.qa import enrolment, queries

    d = dt.date
    rows = [
        ("s", "p1", "base", 1, "consent", "answered", d(2020, 1, 5)),
        ("s", "p2", "base", 1, "consent", "answered", d(2020, 1, 31)),
        ("s", "p3", "base", 1, "consent", "answered", d(2020, 3, 2)),
        ("s", "p3", "fu", 1, "consent", "answered", d(2019, 12, 1)),  # an earlier date of p3 counts: December
        ("s", "p4", "base", 1, "consent", "missing", None),  # no date: not enrolled
    ]
    got = [
        (r.month, r.enrolled, r.cumulative) for r in enrolment(spark.createDataFrame(rows, DATES), "consent").collect()
    ]
    assert sorted(got) == [(d(2019, 12, 1), 1, 1), (d(2020, 1, 1), 2, 3)]
    q = spark.createDataFrame(
        [("k1|base|vitals|2|sbp", "range", "sbp outside its validation range [60, 250]")],
        "row_key string, rule string, reason string",
    )
    (r,) = queries(q).collect()
    assert (r.participant_key, r.event, r.instrument, r.instance, r.field, r.rule) == (
        "k1",
        "base",
        "vitals",
        "2",
        "sbp",
        "range",
    )
