"""Per-person omics features for cohorts (pure transforms): chosen features' normalised values and
signature scores, from each person's latest consented, QC-passed sample collected before the index.

Samples reach persons as genomes do: through silver.sample_link, whose person and consent
silver.omics_samples_<assay> carries (``omics_qc``); a sample that is not consented, failed QC, or
is not linked gives nothing. ``long_values`` explodes only the configured features (a handful of
rows per sample); ``person_features`` picks each cohort member's sample point-in-time and turns
the values into columns with conditional aggregates (no pivot, so the columns do not depend on the
data).

A signature's score is the mean of its features' z-scores, z = (value - mean) / SD with the mean
and sample variance over the assay's passing samples that omics_qc wrote beside each feature; a
feature missing in the sample (or failed QC) is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from omicslake.features.spec import OmicsFeatureSpec


def safe(name: str) -> str:
    """A feature or signature name as part of a column name (anything but letters and digits -> _)."""
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower())


def wanted(spec: OmicsFeatureSpec) -> list[str]:
    """Every feature id ``spec`` reads: its features and its signatures' members, sorted."""
    return sorted({*spec.features, *(f for members in spec.signatures.values() for f in members)})


def long_values(omics: DataFrame, samples: DataFrame, feature_ids: Iterable[str], date_key: str) -> DataFrame:
    """(person_key, sample_id, collection_date, feature_id, value, z) of ``feature_ids`` in
    silver.omics_<assay> (``omics``) for the consented, QC-passed, linked samples of
    silver.omics_samples_<assay> (``samples``). collection_date: the ISO date in
    ``sample_meta[date_key]`` (null when absent or not a date); z: the value's z-score over the
    assay's samples (null when the feature does not vary)."""
    ids = sorted(set(feature_ids))
    sd = F.sqrt("variance")
    f = omics.where(F.col("feature_id").isin(ids)).select(
        "feature_id",
        F.col("mean").alias("_mean"),
        sd.alias("_sd"),
        F.posexplode("values").alias("position", "value"),
    )
    raw = F.col("sample_meta").getItem(date_key)
    day = F.when(
        raw.rlike(r"^\d{4}-\d{2}-\d{2}"),
        F.to_date(F.expr(f"try_to_timestamp(substr(sample_meta['{date_key}'], 1, 10), 'yyyy-MM-dd')")),
    )
    s = samples.where(
        F.col("consent") & F.col("passed") & F.col("position").isNotNull() & F.col("person_key").isNotNull()
    ).select("person_key", "sample_id", "position", day.alias("collection_date"))
    z = F.when(F.col("_sd") > 0, (F.col("value") - F.col("_mean")) / F.col("_sd"))
    return f.join(s, "position").select(
        "person_key", "sample_id", "collection_date", "feature_id", "value", z.alias("z")
    )


def person_features(
    cohort: DataFrame, long: DataFrame | None, assay: str, spec: OmicsFeatureSpec, first_day: int = 1
) -> DataFrame:
    """``cohort`` (person_key, index_date, ...) with has_omics_<assay> (0/1), omics_<assay>_<feature>
    per feature and omics_<assay>_sig_<name> per signature, from ``long`` (``long_values``; None: the
    assay is absent, every column null and has_omics 0).

    The sample used is the person's latest one collected ``first_day`` (1: strictly before the index;
    0: the index day counts) to ``spec.window`` days before the index date; an undated sample is
    used after every dated one when ``spec.undated`` is "use" (ties: the smallest sample id). A
    sample collected after the index is never used."""
    a = safe(assay)
    cols = [f"omics_{a}_{safe(f)}" for f in spec.features] + [f"omics_{a}_sig_{safe(n)}" for n in spec.signatures]
    if long is None:
        out = cohort.withColumn(f"has_omics_{a}", F.lit(0))
        return out.withColumns({c: F.lit(None).cast("double") for c in cols})
    idx = cohort.select("person_key", "index_date")
    cand = long.select("person_key", "sample_id", "collection_date").distinct().join(idx, "person_key")
    days = F.datediff("index_date", "collection_date")
    dated_ok = days >= first_day
    if spec.window is not None:
        dated_ok = dated_ok & (days <= spec.window)
    ok = F.coalesce(dated_ok, F.lit(spec.undated == "use"))  # days is null only for an undated sample
    w = Window.partitionBy("person_key").orderBy(F.col("collection_date").desc_nulls_last(), F.col("sample_id"))
    chosen = cand.where(ok).withColumn("_n", F.row_number().over(w)).where("_n = 1").select("person_key", "sample_id")
    vals = long.join(chosen, ["person_key", "sample_id"])
    fid = F.col("feature_id")
    aggs = [F.max(F.when(fid == f, F.col("value"))).alias(f"omics_{a}_{safe(f)}") for f in spec.features]
    aggs += [
        F.avg(F.when(fid.isin(list(members)), F.col("z"))).alias(f"omics_{a}_sig_{safe(name)}")
        for name, members in spec.signatures.items()
    ]
    per = vals.groupBy("person_key").agg(F.max(F.lit(1)).alias(f"has_omics_{a}"), *aggs)
    out = cohort.join(per, "person_key", "left")
    return out.withColumn(f"has_omics_{a}", F.coalesce(F.col(f"has_omics_{a}"), F.lit(0)))
