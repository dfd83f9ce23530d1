"""Survey dates: the per-person date shift of de-identification, and the date each response was
given (which makes scale scores point-in-time features). Pure transforms on DataFrames.

Shift: with ``jobs.conform_ehr.date_shift`` on, every date of a linked participant moves by the
offset the EHR gives the same patient (``ehr.deid.shift_days`` of the linkage file's patient id, the
id silver.person's key is made from), so a survey date minus an EHR date is the same shifted or
not. A participant without a link has no EHR dates to stay aligned with; their dates move by an
offset keyed on the project and record id instead, never left real.

Response dates: a scale's ``date_field`` (a date or datetime field, or ``<form>_timestamp``) and
``event_date_fields`` (event -> field) say which value dates a response; it is looked up at the
response's project, participant and event, preferring the response's own instance and else the
event's earliest value.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.ehr.deid import shift_days

KEYS = ["project", "participant_key", "event", "instance"]


def survey_shift_days(key: bytes, project: str, record_id: Column, patient_id: Column, max_days: int) -> Column:
    """The offset (days, in [-max_days, -1]) of a participant's dates: the EHR's offset of the linked patient id
    (``ehr.deid.shift_days``), or, unlinked (``patient_id`` null), one keyed on project and record id."""
    own = F.concat(F.lit(f"survey:{project}\x1f"), record_id)
    return F.when(patient_id.isNotNull(), shift_days(key, patient_id, max_days)).otherwise(
        shift_days(key, own, max_days)
    )


def shift_values(values: DataFrame, days: Column) -> DataFrame:
    """Value rows (silver.survey_values' columns) with ``value_date`` and ``value_datetime`` moved by
    ``days`` (an int column), and ``value`` (the ISO string) rewritten to match; other rows unchanged.
    A datetime moves by whole days of 86,400 s, as the EHR's timestamps do."""
    d = days.cast("int")
    new_date = F.date_add(F.col("value_date"), d)
    new_ts = F.timestamp_seconds(F.unix_timestamp(F.col("value_datetime")) + d.cast("long") * 86400)
    value = (
        F.when(F.col("value_date").isNotNull(), F.date_format(new_date, "yyyy-MM-dd"))
        .when(F.col("value_datetime").isNotNull(), F.date_format(new_ts, "yyyy-MM-dd HH:mm:ss"))
        .otherwise(F.col("value"))
    )
    return values.withColumns({"value": value, "value_date": new_date, "value_datetime": new_ts})


DATE_WITHHELD = "<withheld: jobs.conform_ehr.date_shift is on; the delivered text is in bronze>"


def withhold_dates(refused: DataFrame) -> DataFrame:
    """Refused value rows (silver.survey_values' columns with ``raw_value``) with the raw text of
    date and datetime fields (validation ``date_*`` / ``datetime_*``) replaced by ``DATE_WITHHELD``.
    With date shifting on, such a value did not parse or broke its range, so it cannot be shifted,
    and its real text must not sit in quarantine beside shifted silver dates; other rows unchanged."""
    is_date = F.coalesce(F.col("validation"), F.lit("")).rlike("^date(time)?_")
    return refused.withColumn("raw_value", F.when(is_date, F.lit(DATE_WITHHELD)).otherwise(F.col("raw_value")))


def response_dates(
    values: DataFrame, date_field: str | None, event_date_fields: dict[str, str] | None = None
) -> DataFrame:
    """(project, participant_key, event, instance, response_date) for every (project, participant,
    event, instance) of ``values`` (silver.survey_values) whose dating field has a date there.

    The dating field of an event is ``event_date_fields[event]``, else ``date_field``; its value
    (``value_date``, or the day of ``value_datetime``) is taken at the same project, participant and
    event: the same instance's when there is one, else the earliest. Responses with no dating value
    are left out (a score without a date cannot be placed before an index date)."""
    event_date_fields = event_date_fields or {}
    fields = sorted({*event_date_fields.values(), *([date_field] if date_field else [])})
    if not fields:
        raise ValueError("response_dates needs a date_field or event_date_fields")
    field_of: Column = F.lit(date_field)
    for event, f in sorted(event_date_fields.items()):
        field_of = F.when(F.col("event") == event, F.lit(f)).otherwise(field_of)
    day = F.coalesce(F.col("value_date"), F.to_date(F.col("value_datetime")))
    dated = values.where(F.col("field").isin(fields) & day.isNotNull()).select(
        "project",
        "participant_key",
        "event",
        F.col("instance").alias("_date_instance"),
        F.col("field").alias("_date_field"),
        day.alias("_day"),
    )
    responses = values.select(*KEYS).distinct().withColumn("_want", field_of)
    on = [
        responses["project"] == dated["project"],
        responses["participant_key"] == dated["participant_key"],
        responses["event"].eqNullSafe(dated["event"]),
        responses["_want"] == dated["_date_field"],
    ]
    j = responses.join(dated, on, "inner").select(*[responses[k] for k in KEYS], dated["_date_instance"], dated["_day"])
    # the same instance's date first (False sorts before True), then the earliest
    rank = F.struct((F.col("_date_instance") != F.col("instance")).alias("_other"), F.col("_day"))
    return j.groupBy(*KEYS).agg(F.min_by("_day", rank).alias("response_date"))
