"""Point-in-time patient features at the index date (pure transforms).

Every feature family reads only events dated strictly before the index date (``start_date <
index_date``: an event on the index day itself is not used, since its time relative to the
index is unknown at day resolution), unless the cohort sets ``features.index_day`` (a baseline
visit's own measurements). Nothing after the index date is ever used. Windows are look-back
days: an event ``d`` days before the index (d = 1 is the day before) is in window W when
``first <= d <= W``, first = 1 (0 with index_day).

Families (column names):
- demographics: age_at_index, age_90_plus, female, race, ethnicity
- condition groups: cond_<group> (0/1, any time before index); Charlson: charlson_<group>
  flags and charlson_index (the sum of the weights of the groups present)
- labs, per name and window: lab_<name>_<stat>_<W>d for stat in last, mean, min, max, slope
  (per year, least squares over the window), count
- medications: drug_<class>_count_<W>d
- utilisation: visits_<class>_<W>d and visits_all_<W>d
- genetics: has_genome, pc1..pcK, prs (null without a consented, QC-passed genome)
- scales, per scale (or subscale) and window: scale_<scale>_<subscale>_<stat>_<W>d for stat in
  last, mean, min, max, count, over responses dated 0 (with ``scale_index_day``, the default: a
  questionnaire answered on the index day is known that day) or 1 to W days before the index
- omics, per assay: has_omics_<assay>, omics_<assay>_<feature>, omics_<assay>_sig_<name> from the
  person's latest consented, QC-passed sample collected before the index (``omics.features``)

All families are conditional aggregates in one groupBy of the events joined to the index
dates: one shuffle of the events, no UDF, nothing collected.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.features.spec import FeatureSpec


def age_years(at: Column, birth: Column) -> Column:
    """Age in years at a date, to two decimals (months_between / 12): ``age_at_index``."""
    return F.round(F.months_between(at, birth) / 12, 2)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower())


def event_aggregates(spec: FeatureSpec) -> list[Column]:
    """The aggregate columns over (events joined to index dates, with ``_days_before``)."""
    d = F.col("_days_before")
    dom = F.col("domain")
    out: list[Column] = []
    for group, codes in spec.condition_groups.items():
        hit = (dom == "condition") & F.col("code").isin(list(codes))
        out.append(F.max(F.when(hit, 1).otherwise(0)).alias(f"cond_{_safe(group)}"))
    for group, g in spec.charlson.items():
        hit = (dom == "condition") & F.col("code").isin(list(g.codes))
        out.append(F.max(F.when(hit, 1).otherwise(0)).alias(f"charlson_{_safe(group)}"))
    years = -d / 365.25  # event time in years relative to the index (negative: before)
    for lab in spec.labs:
        for w in spec.lab_windows:
            hit = (dom == "measurement") & (F.col("class") == lab.lower()) & (d <= w) & F.col("value").isNotNull()
            v = F.when(hit, F.col("value"))
            t = F.when(hit, years)
            base = f"lab_{_safe(lab)}"
            stat_cols = {
                # the latest value; ties on a day: the larger (deterministic)
                "last": F.max_by(v, F.when(hit, F.struct(-d, F.col("value")))),
                "mean": F.avg(v),
                "min": F.min(v),
                "max": F.max(v),
                "slope": F.regr_slope(v, t),
                "count": F.count(v),
            }
            for stat in spec.lab_stats:
                out.append(stat_cols[stat].alias(f"{base}_{stat}_{w}d"))
    for name in spec.scales:
        scale, _, part = name.partition(".")
        cls = f"{scale}.{part or 'total'}".lower()
        for w in spec.scale_windows:
            hit = (dom == "scale") & (F.col("class") == cls) & (d <= w) & F.col("value").isNotNull()
            v = F.when(hit, F.col("value"))
            stat_cols = {
                # the latest response; ties on a day: the larger score (deterministic)
                "last": F.max_by(v, F.when(hit, F.struct(-d, F.col("value")))),
                "mean": F.avg(v),
                "min": F.min(v),
                "max": F.max(v),
                "count": F.count(v),
            }
            for stat in spec.scale_stats:
                out.append(stat_cols[stat].alias(f"scale_{_safe(scale)}_{_safe(part or 'total')}_{stat}_{w}d"))
    for cls, codes in spec.drug_classes.items():
        hit = (dom == "drug") & F.col("code").isin(list(codes)) & (d <= spec.drug_window)
        out.append(F.count(F.when(hit, 1)).alias(f"drug_{_safe(cls)}_count_{spec.drug_window}d"))
    w = spec.utilisation_window
    for cls in spec.visit_classes:
        hit = (dom == "visit") & (F.col("class") == cls.lower()) & (d <= w)
        out.append(F.count(F.when(hit, 1)).alias(f"visits_{_safe(cls)}_{w}d"))
    out.append(F.count(F.when((dom == "visit") & (d <= w), 1)).alias(f"visits_all_{w}d"))
    return out


def features(
    cohort: DataFrame,
    ev: DataFrame,
    person: DataFrame,
    spec: FeatureSpec,
    genetics: DataFrame | None = None,
    omics: dict[str, DataFrame] | None = None,
) -> DataFrame:
    """One row per cohort member: person_key, index_date and every feature of ``spec``.

    ``ev``: the long event table (``cohort.events``, with ``cohort.scale_events`` for scale features).
    ``genetics``: (person_key, pc1.., prs) for persons with a consented, QC-passed genome.
    ``omics``: assay -> its long values (``omics.features.long_values``) for ``spec.omics``.
    """
    idx = cohort.select("person_key", "index_date")
    first_day = 0 if spec.index_day else 1
    d = F.col("_days_before")
    # a scale response on the index day counts with scale_index_day (its day is when it was answered)
    on_index_day = (F.col("domain") == "scale") & (d == 0) if spec.scale_index_day else F.lit(False)
    j = (
        ev.join(idx, "person_key")
        .withColumn("_days_before", F.datediff("index_date", "start_date"))
        .where((d >= first_day) | on_index_day)
    )
    agg = j.groupBy("person_key").agg(*event_aggregates(spec))
    zero_fill = [
        c
        for c in agg.columns
        if c.startswith(("cond_", "charlson_", "drug_", "visits_"))
        or (c.startswith(("lab_", "scale_")) and "_count_" in c)
    ]
    p = person.select(
        "person_key",
        "birth_date",
        "age_90_plus",
        (F.col("gender_concept_id") == 8532).cast("int").alias("female"),
        F.coalesce(F.col("race_source_value"), F.lit("unknown")).alias("race"),
        F.coalesce(F.col("ethnicity_source_value"), F.lit("unknown")).alias("ethnicity"),
    )
    out = idx.join(p, "person_key", "left").join(agg, "person_key", "left").fillna(0, subset=zero_fill)
    out = (
        out.withColumn("age_at_index", age_years(F.col("index_date"), F.col("birth_date")))
        .withColumn("age_90_plus", F.coalesce(F.col("age_90_plus").cast("int"), F.lit(0)))
        .drop("birth_date")
    )
    if spec.charlson:
        score = sum((F.col(f"charlson_{_safe(g)}") * cg.weight for g, cg in spec.charlson.items()), F.lit(0))
        out = out.withColumn("charlson_index", score.cast("int"))
    if spec.omics:
        from omicslake.omics.features import person_features

        for assay, o in spec.omics.items():
            out = person_features(out, (omics or {}).get(assay), assay, o, first_day)
    if spec.genetics:
        if genetics is not None:
            out = (
                out.join(genetics, "person_key", "left")
                .withColumn("has_genome", F.col("_genome").isNotNull().cast("int"))
                .drop("_genome")
            )
        else:
            out = out.withColumn("has_genome", F.lit(0))
    return out


def genetics_by_person(sample_link: DataFrame, pcs: DataFrame | None, prs: DataFrame | None, n_pcs: int) -> DataFrame:
    """(person_key, _genome, pc1..pcK, prs) for consented samples with genetic data; one sample per
    person (the smallest sample id when a person has several)."""
    link = sample_link.where("consent").groupBy("person_key").agg(F.min("sample_id").alias("sample_id"))
    cols: list[Column] = [F.col("person_key"), F.col("sample_id").alias("_genome")]
    g = link
    if pcs is not None:
        have = [c for c in pcs.columns if c.startswith("pc")][:n_pcs]
        g = g.join(pcs.select("sample_id", *have), "sample_id", "inner")
        cols += [F.col(c) for c in have]
    if prs is not None:
        g = g.join(prs.select("sample_id", "prs"), "sample_id", "left" if pcs is not None else "inner")
        cols.append(F.col("prs"))
    return g.select(*cols)
