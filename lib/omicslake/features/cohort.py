"""Cohorts from silver EHR tables (pure transforms).

``events`` puts the silver fact tables in one long shape (person_key, domain, code, concept_id,
class, start_date, end_date, value, name); ``scale_events`` adds dated scale scores to it, so an
index event, a criterion or an outcome can be a questionnaire score (``value`` thresholds). ``build_cohort`` applies a :class:`CohortSpec`:
index date, prior observation, inclusion/exclusion, outcome and censoring, with one join of
the relevant events to the index dates and one grouped aggregation for every criterion
together. Nothing is collected to the driver but scalars.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.features.patient import age_years
from omicslake.features.spec import CohortSpec, Criterion, Events, IndexRule

EVENT_COLUMNS = ["person_key", "domain", "code", "concept_id", "class", "start_date", "end_date", "value"]


def events(
    visits: DataFrame | None = None,
    conditions: DataFrame | None = None,
    measurements: DataFrame | None = None,
    drugs: DataFrame | None = None,
    procedures: DataFrame | None = None,
) -> DataFrame:
    """The silver fact tables as one long event table (dates, not times: windows count days)."""
    parts: list[DataFrame] = []
    null_d, null_s = F.lit(None).cast("double"), F.lit(None).cast("string")
    if visits is not None:
        parts.append(
            visits.select(
                "person_key",
                F.lit("visit").alias("domain"),
                F.col("visit_source_code").alias("code"),
                F.col("visit_concept_id").alias("concept_id"),
                F.lower("visit_source_value").alias("class"),
                F.to_date("visit_start_datetime").alias("start_date"),
                F.to_date("visit_end_datetime").alias("end_date"),
                null_d.alias("value"),
            )
        )
    if conditions is not None:
        parts.append(
            conditions.select(
                "person_key",
                F.lit("condition").alias("domain"),
                F.col("condition_source_value").alias("code"),
                F.col("condition_concept_id").alias("concept_id"),
                null_s.alias("class"),
                F.col("condition_start_date").alias("start_date"),
                F.col("condition_end_date").alias("end_date"),
                null_d.alias("value"),
            )
        )
    if measurements is not None:
        parts.append(
            measurements.select(
                "person_key",
                F.lit("measurement").alias("domain"),
                F.col("measurement_source_value").alias("code"),
                F.col("measurement_concept_id").alias("concept_id"),
                F.lower("measurement_name").alias("class"),
                F.to_date("measurement_datetime").alias("start_date"),
                F.lit(None).cast("date").alias("end_date"),
                F.col("value_as_number").alias("value"),
            )
        )
    if drugs is not None:
        parts.append(
            drugs.select(
                "person_key",
                F.lit("drug").alias("domain"),
                F.col("drug_source_value").alias("code"),
                F.col("drug_concept_id").alias("concept_id"),
                null_s.alias("class"),
                F.to_date("drug_exposure_start_datetime").alias("start_date"),
                F.to_date("drug_exposure_end_datetime").alias("end_date"),
                null_d.alias("value"),
            )
        )
    if procedures is not None:
        parts.append(
            procedures.select(
                "person_key",
                F.lit("procedure").alias("domain"),
                F.col("procedure_source_value").alias("code"),
                F.col("procedure_concept_id").alias("concept_id"),
                null_s.alias("class"),
                F.to_date("procedure_datetime").alias("start_date"),
                F.to_date("procedure_end_datetime").alias("end_date"),
                null_d.alias("value"),
            )
        )
    if not parts:
        raise ValueError("events() needs at least one silver table")
    out = reduce(DataFrame.unionByName, parts)
    return out.select(
        F.col("person_key"),
        F.col("domain"),
        F.col("code").cast("string"),
        F.col("concept_id").cast("int"),
        F.col("class"),
        F.col("start_date").cast("date"),
        F.col("end_date").cast("date"),
        F.col("value").cast("double"),
    )


def matches(e: Events) -> Column:
    """True for the events a selector names."""
    cond = F.col("domain") == e.domain
    any_of: list[Column] = []
    if e.codes:
        any_of.append(F.col("code").isin(list(e.codes)))
    if e.concept_ids:
        any_of.append(F.col("concept_id").isin(list(e.concept_ids)))
    if e.classes:
        any_of.append(F.col("class").isin([c.lower() for c in e.classes]))
    if any_of:
        cond = cond & reduce(lambda a, b: a | b, any_of)
    if e.value:
        lo, hi = e.value[0], e.value[1]
        if lo is not None:
            cond = cond & (F.col("value") >= lo)
        if hi is not None:
            cond = cond & (F.col("value") <= hi)
    return cond


def scale_events(scores: DataFrame, participants: DataFrame) -> DataFrame:
    """gold.scale_scores as events of the long event table (``EVENT_COLUMNS``): one per scored,
    dated response of a participant linked to a person (silver.survey_participant), domain
    ``scale``, code the scale, class ``<scale>.<subscale>`` (lower case), start_date the response
    date, value the score. Undated, unscored and unlinked responses are left out: they cannot be
    placed before or after an index date."""
    link = participants.where(F.col("person_key").isNotNull()).select("project", "participant_key", "person_key")
    s = scores.where(F.col("response_date").isNotNull() & F.col("score").isNotNull())
    return s.join(link, ["project", "participant_key"]).select(
        F.col("person_key"),
        F.lit("scale").alias("domain"),
        F.lower("scale").alias("code"),
        F.lit(None).cast("int").alias("concept_id"),
        F.lower(F.concat_ws(".", "scale", "subscale")).alias("class"),
        F.col("response_date").cast("date").alias("start_date"),
        F.lit(None).cast("date").alias("end_date"),
        F.col("score").cast("double").alias("value"),
    )


def in_window(days: Column, window: tuple[int | None, ...]) -> Column:
    """True where ``days`` (day offsets from the index date) lies in ``window`` = (lo, hi), both ends
    inclusive, None for an open end; null where ``days`` is null and an end is set."""
    lo, hi = window[0], window[1]
    c = F.lit(True)
    if lo is not None:
        c = c & (days >= lo)
    if hi is not None:
        c = c & (days <= hi)
    return c


def index_dates(ev: DataFrame, rule: IndexRule) -> DataFrame:
    """(person_key, index_date): the first or last matching event per person."""
    day = F.coalesce("end_date", "start_date") if rule.date == "end" else F.col("start_date")
    x = ev.where(matches(rule)).select("person_key", day.alias("_d"), F.col("start_date").alias("_start"))
    if rule.between:
        x = x.where(F.col("_start").between(F.to_date(F.lit(rule.between[0])), F.to_date(F.lit(rule.between[1]))))
    # first: the earliest event's day (for "end", the discharge of the first stay)
    pick = F.min_by if rule.occurrence == "first" else F.max_by
    return x.groupBy("person_key").agg(pick(F.col("_d"), F.col("_start")).alias("index_date"))


def build_cohort(
    ev: DataFrame, person: DataFrame, spec: CohortSpec, end_of_data: Column
) -> tuple[DataFrame, DataFrame]:
    """(cohort, all_candidates). The cohort: eligible persons with index_date, label, the outcome
    date, time-to-event fields and censoring. all_candidates: everyone with an index event and
    a column per criterion (for the attrition counts).

    label = 1 when an outcome event falls in the outcome window (on or before censoring);
    censor_date = the earlier of death and the end of data; event_days/time_days/event give
    survival data: time to the outcome, else to censoring or the horizon, whichever is first.
    """
    idx = index_dates(ev, spec.index)
    crit = [c for c in (*spec.include, *spec.exclude) if not c.age]
    sel = reduce(lambda a, b: a | b, [matches(c) for c in crit] + [matches(spec.outcome)], F.lit(False))
    days = F.datediff("start_date", "index_date")
    j = ev.where(sel).join(idx, "person_key")
    aggs = [F.sum(F.when(matches(c) & in_window(days, c.window), 1).otherwise(0)).alias(f"_c_{c.name}") for c in crit]
    aggs.append(
        F.min(F.when(matches(spec.outcome) & in_window(days, spec.outcome.window), F.col("start_date"))).alias(
            "outcome_date"
        )
    )
    counts = j.groupBy("person_key").agg(*aggs)
    # observation is the EHR's: a survey response alone does not open a person's record
    first_seen = (
        ev.where(F.col("domain") != "scale").groupBy("person_key").agg(F.min("start_date").alias("observation_start"))
    )
    p = person.select("person_key", "birth_date", "death_date")
    c = idx.join(p, "person_key", "left").join(first_seen, "person_key", "left").join(counts, "person_key", "left")
    c = c.withColumn("age_at_index", age_years(F.col("index_date"), F.col("birth_date")))
    c = c.withColumn(
        "_prior_obs",
        F.coalesce(F.datediff("index_date", "observation_start") >= spec.prior_observation_days, F.lit(False)),
    )
    c = c.withColumn("_alive", F.col("death_date").isNull() | (F.col("death_date") > F.col("index_date")))
    ok: list[Column] = [F.col("_prior_obs"), F.col("_alive")]
    for cr in spec.include:
        ok.append(_passes(cr, include=True))
    for cr in spec.exclude:
        ok.append(_passes(cr, include=False))
    checks = [
        ("alive_at_index", F.col("_alive")),
        (f"prior_observation_{spec.prior_observation_days}d", F.col("_prior_obs")),
    ]
    checks += [(f"include_{cr.name}", _passes(cr, True)) for cr in spec.include]
    checks += [(f"exclude_{cr.name}", _passes(cr, False)) for cr in spec.exclude]
    candidates = c.select("*", *[chk.alias(f"_ok_{name}") for name, chk in checks])
    eligible = candidates.where(reduce(lambda a, b: a & b, ok))
    horizon = spec.horizon
    censor = F.least(F.coalesce("death_date", end_of_data), end_of_data)
    out = eligible.withColumn("censor_date", censor).withColumn(
        "outcome_date", F.when(F.col("outcome_date") <= F.col("censor_date"), F.col("outcome_date"))
    )
    event_days = F.datediff("outcome_date", "index_date")
    followup = F.least(F.lit(horizon), F.datediff("censor_date", "index_date"))
    out = out.select(
        "person_key",
        "index_date",
        "age_at_index",
        F.col("outcome_date").isNotNull().cast("int").alias("label"),
        "outcome_date",
        event_days.alias("event_days"),
        F.coalesce(event_days, followup).alias("time_days"),
        F.col("outcome_date").isNotNull().alias("event"),
        "censor_date",
        (followup >= horizon).alias("complete_followup"),
    )
    return out, candidates


def _passes(cr: Criterion, include: bool) -> Column:
    if cr.age:
        lo, hi = cr.age[0], cr.age[1]
        a = F.col("age_at_index")
        hit = F.lit(True)
        if lo is not None:
            hit = hit & (a >= lo)
        if hi is not None:
            hit = hit & (a <= hi)
        hit = F.coalesce(hit, F.lit(False))
    else:
        hit = F.coalesce(F.col(f"_c_{cr.name}"), F.lit(0)) >= cr.min_count
    return hit if include else ~hit


def attrition(candidates: DataFrame, spec: CohortSpec) -> list[tuple[str, int]]:
    """Persons left after each step, in order (one aggregate over the candidates)."""
    steps = [c for c in candidates.columns if c.startswith("_ok_")]
    acc = F.lit(True)
    exprs = [F.count(F.lit(1)).alias("with_index_event")]
    for s in steps:
        acc = acc & F.col(s)
        exprs.append(F.sum(acc.cast("long")).alias(s[4:]))
    row = candidates.agg(*exprs).first()
    assert row is not None
    return [("with_index_event", int(row[0]))] + [(s[4:], int(row[i + 1] or 0)) for i, s in enumerate(steps)]
