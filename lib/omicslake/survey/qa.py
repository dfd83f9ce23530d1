"""Study quality assurance from the typed survey values: completeness by project, event and
instrument, refused values by rule. Pure transforms on DataFrames."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def completeness(values: DataFrame, quarantined: DataFrame | None) -> DataFrame:
    """Per (project, event, instrument): participants, answered / missing / not-shown values of
    silver.survey_values (form status fields left out), values refused to quarantine (``invalid``,
    from quarantine.survey_values' row_json), completeness = answered / (answered + missing +
    invalid) (a not-shown field is not expected, so not missing), and the share of instrument
    instances whose form status is Complete (2)."""
    fields = values.where(F.col("field_type") != "form_status")
    counts = fields.groupBy("project", "event", "instrument").agg(
        F.countDistinct("participant_key").alias("participants"),
        F.sum((F.col("status") == "answered").cast("long")).alias("answered"),
        F.sum((F.col("status") == "missing").cast("long")).alias("missing"),
        F.sum((F.col("status") == "not_shown").cast("long")).alias("not_shown"),
    )
    status = (
        values.where(F.col("field_type") == "form_status")
        .groupBy("project", "event", "instrument")
        .agg(F.avg((F.col("value") == "2").cast("double")).alias("forms_complete_share"))
    )
    keys = ["project", "event", "instrument"]
    if quarantined is not None:
        j = F.from_json("row_json", "project string, event string, instrument string, field_type string")
        bad = (
            quarantined.select(j.alias("r"))
            .where(F.col("r.field_type") != "form_status")
            .groupBy(
                F.col("r.project").alias("project"),
                F.col("r.event").alias("event"),
                F.col("r.instrument").alias("instrument"),
            )
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
