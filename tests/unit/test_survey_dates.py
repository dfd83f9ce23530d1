"""Survey dates: the response date of a scale's answers (``survey.dates.response_dates``) and the date
shift (``survey.dates.shift_values``) on hand-made values, checked against dates worked out by hand and
against the EHR's own shift of the same patient (``ehr.conform.visit_rows``), with the offset recomputed
with Python's ``hmac`` (test_deid's ``offset``)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from test_deid import ENCOUNTERS, KEY, bronze, offset

from omicslake.ehr import conform as C
from omicslake.survey.dates import DATE_WITHHELD, response_dates, shift_values, survey_shift_days, withhold_dates

VALUES = (
    "project string, participant_key string, event string, instance int, field string, "
    "value string, value_date date, value_datetime timestamp"
)
d, t = dt.date, dt.datetime


def test_response_dates_by_event_field_own_instance_then_earliest(spark: SparkSession) -> None:
    rows = [
        # p1 at baseline: the consent date dates the wellbeing answers
        ("s", "p1", "base", 1, "consent_date", None, d(2019, 3, 1), None),
        ("s", "p1", "base", 1, "mood_1", "3", None, None),
        # p1 at follow-up: answers at instance 1; visits (repeating) at instances 2 and 3. Instance 1
        # has no visit date of its own: the event's earliest (2020-01-10); the visit rows of
        # instance 2 are dated by their own visit date (2020-02-10)
        ("s", "p1", "fu", 1, "mood_1", "4", None, None),
        ("s", "p1", "fu", 2, "visit_date", None, d(2020, 2, 10), None),
        ("s", "p1", "fu", 3, "visit_date", None, d(2020, 1, 10), None),
        # an event not in event_date_fields: REDCap's survey timestamp (date_field) dates it
        ("s", "p1", "extra", 1, "mood_1", "2", None, None),
        ("s", "p1", "extra", 1, "wellbeing_timestamp", None, None, t(2020, 3, 5, 23, 59)),
        # p2 at baseline without a consent date: no response date; the other participant's date is not p1's
        ("s", "p2", "base", 1, "mood_1", "1", None, None),
        ("t", "p1", "base", 1, "consent_date", None, d(2018, 1, 1), None),
    ]
    values = spark.createDataFrame(rows, VALUES).where(F.col("project") == "s")
    out = response_dates(values, "wellbeing_timestamp", {"base": "consent_date", "fu": "visit_date"})
    got = {(r.participant_key, r.event, r.instance): r.response_date for r in out.collect()}
    assert got == {
        ("p1", "base", 1): d(2019, 3, 1),
        ("p1", "fu", 1): d(2020, 1, 10),
        ("p1", "fu", 2): d(2020, 2, 10),
        ("p1", "fu", 3): d(2020, 1, 10),
        ("p1", "extra", 1): d(2020, 3, 5),
    }


def test_survey_date_minus_ehr_date_is_unchanged_by_the_shift(spark: SparkSession) -> None:
    """Participants R1, R2 link to patients PA, PB (linkage patient ids); R3 is not linked. Each
    person's EHR visit and survey dates move by the same keyed offset, so their differences stay."""
    enc = bronze(
        spark,
        ENCOUNTERS,
        [
            ("e1", "2020-03-01T10:00:00Z", "2020-03-01T11:00:00Z", "PA", "outpatient", "1", "x", "1"),
            ("e2", "2018-12-31T08:00:00Z", "2018-12-31T09:00:00Z", "PB", "outpatient", "1", "x", "1"),
        ],
    )
    values = spark.createDataFrame(
        [
            ("R1", "PA", "consent_date", "2020-05-10", d(2020, 5, 10), None),
            ("R1", "PA", "f_timestamp", "2020-05-10 09:30:00", None, t(2020, 5, 10, 9, 30)),
            ("R1", "PA", "mood_1", "3", None, None),
            ("R2", "PB", "consent_date", "2019-02-28", d(2019, 2, 28), None),
            ("R3", None, "consent_date", "2021-01-01", d(2021, 1, 1), None),
        ],
        "record_id string, patient_id string, field string, value string, value_date date, value_datetime timestamp",
    )
    days = survey_shift_days(KEY, "s", F.col("record_id"), F.col("patient_id"), 365)
    shifted = {(r.record_id, r.field): r for r in shift_values(values, days).collect()}
    plain = {(r.record_id, r.field): r for r in values.collect()}

    def visit_day(deid: C.Deid) -> dict[str, dt.date]:
        rows = C.visit_rows(enc, deid).collect()
        return {
            pid: r.visit_start_datetime.date()
            for pid, r in zip(["PA", "PB"], sorted(rows, key=lambda r: r._line), strict=True)
        }

    ehr_plain, ehr_shift = visit_day(C.Deid(KEY)), visit_day(C.Deid(KEY, date_shift=True, max_days=365))
    for rid, pid in (("R1", "PA"), ("R2", "PB")):
        before = plain[(rid, "consent_date")].value_date - ehr_plain[pid]
        after = shifted[(rid, "consent_date")].value_date - ehr_shift[pid]
        assert before == after, (rid, before, after)
        assert ehr_shift[pid] - ehr_plain[pid] == dt.timedelta(days=offset(KEY, pid, 365))
    # by hand: every date and datetime of R1 moves by PA's offset, the ISO text with it
    k = dt.timedelta(days=offset(KEY, "PA", 365))
    assert shifted[("R1", "consent_date")].value == (d(2020, 5, 10) + k).isoformat()
    assert shifted[("R1", "f_timestamp")].value_datetime == t(2020, 5, 10, 9, 30) + k
    assert shifted[("R1", "f_timestamp")].value == (t(2020, 5, 10, 9, 30) + k).isoformat(sep=" ")
    assert shifted[("R1", "mood_1")].value == "3" and shifted[("R1", "mood_1")].value_date is None
    # unlinked: an offset of its own, keyed on project and record id; never left unshifted
    k3 = offset(KEY, "survey:s\x1fR3", 365)
    assert k3 != 0 and shifted[("R3", "consent_date")].value_date == d(2021, 1, 1) + dt.timedelta(days=k3)


def test_refused_dates_are_withheld_from_quarantine_when_dates_are_shifted(spark: SparkSession) -> None:
    """A refused date or datetime cannot be shifted: with date_shift on its delivered text is withheld
    in quarantine (bronze keeps it); a refused number or choice keeps its text."""
    rows = [
        ("dob", "date_ymd", "1961-02-30"),
        ("visit_at", "datetime_dmy", "31-12-2019 25:00"),
        ("weight", "number", "700"),
        ("sex", None, "7"),
    ]
    refused = spark.createDataFrame(rows, "field string, validation string, raw_value string")
    got = {r.field: r.raw_value for r in withhold_dates(refused).collect()}
    assert got == {"dob": DATE_WITHHELD, "visit_at": DATE_WITHHELD, "weight": "700", "sex": "7"}
