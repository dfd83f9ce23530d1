"""Study completeness on a hand-made set of survey values (worked out by hand in the comments)."""

from __future__ import annotations

from pyspark.sql import SparkSession

from omicslake.survey.qa import completeness

VALUES = "project string, participant_key string, event string, instrument string, field string, field_type string, status string, value string"
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
    out = completeness(spark.createDataFrame(rows, VALUES), spark.createDataFrame(q, QUARANTINE))
    got = {
        (r.project, r.event, r.instrument): (
            r.participants, r.answered, r.missing, r.not_shown, r.invalid, r.forms_complete_share, r.completeness
        )
        for r in out.collect()
    }  # fmt: skip
    # s/base/f: 2 participants; answered 3, missing 1, hidden 1, refused 1 -> 3 / (3 + 1 + 1) = 0.6; 1 of 2 forms complete
    assert got == {("s", "base", "f"): (2, 3, 1, 1, 1, 0.5, 0.6), ("c", None, "g"): (1, 1, 0, 0, 0, None, 1.0)}
