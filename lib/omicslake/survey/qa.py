"""Study quality assurance from the typed survey values: completeness by project, event,
instrument and site (the REDCap data access group), refused values by rule. Pure transforms on DataFrames."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

BOOKKEEPING = ("form_status", "form_timestamp")  # rows of REDCap's own columns, not fields a form asks for


def completeness(values: DataFrame, quarantined: DataFrame | None) -> DataFrame:
    """Per (project, event, instrument, site): participants, answered / missing / not-shown values of
    silver.survey_values (form status and timestamp rows left out; site = the data access group, null
    for records without one), values refused to quarantine (``invalid``,
    from quarantine.survey_values' row_json), completeness = answered / (answered + missing +
    invalid) (a not-shown field is not expected, so not missing), and the share of instrument
    instances whose form status is Complete (2)."""
    keys = ["project", "event", "instrument", "site"]
    fields = values.where(~F.col("field_type").isin(*BOOKKEEPING))
    counts = fields.groupBy(*keys).agg(
        F.countDistinct("participant_key").alias("participants"),
        F.sum((F.col("status") == "answered").cast("long")).alias("answered"),
        F.sum((F.col("status") == "missing").cast("long")).alias("missing"),
        F.sum((F.col("status") == "not_shown").cast("long")).alias("not_shown"),
    )
    status = (
        values.where(F.col("field_type") == "form_status")
        .groupBy(*keys)
        .agg(F.avg((F.col("value") == "2").cast("double")).alias("forms_complete_share"))
    )
    if quarantined is not None:
        j = F.from_json("row_json", "project string, event string, instrument string, field_type string, site string")
        bad = (
            quarantined.select(j.alias("r"))
            .where(~F.col("r.field_type").isin(*BOOKKEEPING))
            .groupBy(*[F.col(f"r.{k}").alias(k) for k in keys])
            .agg(F.count("*").alias("invalid"))
        )
        counts = counts.join(bad, [counts[k].eqNullSafe(bad[k]) for k in keys], "left").select(
            *[counts[c] for c in counts.columns], F.coalesce(bad["invalid"], F.lit(0)).alias("invalid")
        )
    else:
        counts = counts.withColumn("invalid", F.lit(0).cast("long"))
    out = counts.join(status, [counts[k].eqNullSafe(status[k]) for k in keys], "left").select(
        *[counts[c] for c in counts.columns], status["forms_complete_share"]
    )
    expected = F.col("answered") + F.col("missing") + F.col("invalid")
    return out.withColumn("completeness", F.when(expected > 0, F.col("answered") / expected))


def visit_windows(
    values: DataFrame,
    event: str,
    field: str,
    anchor_event: str,
    anchor_field: str,
    min_days: int,
    max_days: int,
) -> DataFrame:
    """Protocol-window deviations of one visit: per participant and instance of ``field`` (a date) at
    ``event``, the days since ``anchor_field`` at ``anchor_event`` and ``deviation``: early (< min_days),
    late (> max_days), no_visit_date / no_anchor_date (one of the two dates is missing), or null (in the
    window). Columns: project, participant_key, event, instance, field, anchor, days, min_days,
    max_days, deviation."""
    dates = values.where(F.col("value_date").isNotNull() | (F.col("status") == "missing"))
    visit = dates.where((F.col("event") == event) & (F.col("field") == field)).select(
        "project", "participant_key", "instance", F.col("value_date").alias("_visit")
    )
    anchor = (
        dates.where((F.col("event") == anchor_event) & (F.col("field") == anchor_field))
        .groupBy("project", "participant_key")
        .agg(F.min("value_date").alias("_anchor"))
    )
    days = F.datediff("_visit", "_anchor")
    deviation = (
        F.when(F.col("_visit").isNull(), "no_visit_date")
        .when(F.col("_anchor").isNull(), "no_anchor_date")
        .when(days < min_days, "early")
        .when(days > max_days, "late")
    )
    return visit.join(anchor, ["project", "participant_key"], "left").select(
        "project",
        "participant_key",
        F.lit(event).alias("event"),
        "instance",
        F.lit(field).alias("field"),
        F.lit(f"{anchor_event}.{anchor_field}").alias("anchor"),
        days.alias("days"),
        F.lit(min_days).alias("min_days"),
        F.lit(max_days).alias("max_days"),
        deviation.alias("deviation"),
    )


def enrolment(values: DataFrame, field: str) -> DataFrame:
    """Enrolment over time: per project and calendar month of the participants' first ``field`` date
    (e.g. the consent date), the participants enrolled that month and cumulatively. Columns: project,
    month (first day), enrolled, cumulative."""
    from pyspark.sql import Window

    first = (
        values.where((F.col("field") == field) & F.col("value_date").isNotNull())
        .groupBy("project", "participant_key")
        .agg(F.min("value_date").alias("_d"))
    )
    monthly = first.groupBy("project", F.trunc("_d", "month").alias("month")).agg(F.count("*").alias("enrolled"))
    w = Window.partitionBy("project").orderBy("month").rowsBetween(Window.unboundedPreceding, 0)
    return monthly.withColumn("cumulative", F.sum("enrolled").over(w))


def queries(quarantined: DataFrame) -> DataFrame:
    """The data queries of a study, one per refused value: participant (pseudonym), event,
    instrument, instance, field, rule and reason (which never holds the value), from
    quarantine.survey_values' row key."""
    parts = F.split("row_key", r"\|")
    return quarantined.select(
        parts.getItem(0).alias("participant_key"),
        parts.getItem(1).alias("event"),
        parts.getItem(2).alias("instrument"),
        parts.getItem(3).alias("instance"),
        parts.getItem(4).alias("field"),
        "rule",
        "reason",
    )
