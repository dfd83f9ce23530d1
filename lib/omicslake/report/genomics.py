"""Report sections on the genotypes: QC histograms, the genetic PCs coloured by recorded race, and
the GWAS plots the gwas job left under ``<lake>/reports/gwas_<name>/``. Per-sample QC and PC numbers
are read; no EHR row reaches the page (race only as a plot's colour groups)."""

from __future__ import annotations

import html
from collections.abc import Mapping

from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.report.render import Section, hist, img, png, pyplot


def genotype_qc(lake: Lake) -> Section:
    """The "Genotype QC" section: histograms of sample call rate and het/hom-var ratio (silver.sample_qc) and of
    variant AF and HWE p (silver.variant_qc, at most 200,000 variants); nothing when neither table exists."""
    imgs = []
    if lake.exists("silver.sample_qc"):
        s = lake.read("silver.sample_qc").select("call_rate", "r_het_hom_var").toPandas()  # one row per sample
        imgs += [
            hist(list(s["call_rate"]), "Sample call rate", "call rate"),
            hist(list(s["r_het_hom_var"]), "Het/hom-var ratio", "ratio"),
        ]
    if lake.exists("silver.variant_qc"):
        v = lake.read("silver.variant_qc").select("af", "hwe_p").sample(fraction=1.0, seed=1).limit(200_000).toPandas()
        imgs += [hist(list(v["af"]), "Variant allele frequency", "AF"), hist(list(v["hwe_p"]), "HWE p-value", "p")]
    if not imgs:
        return Section()
    return Section("<h2>Genotype QC</h2><div class='grid'>" + "".join(imgs) + "</div>", {"qc_plots": len(imgs)})


def principal_components(lake: Lake) -> Section:
    """The "Genetic principal components" section: PC1 against PC2 of gold.genetic_pcs, coloured by the recorded
    race of the linked person (silver.sample_link + silver.person; "not linked" / "unknown" otherwise);
    nothing when gold.genetic_pcs is absent."""
    if not lake.exists("gold.genetic_pcs"):
        return Section()
    pcs = lake.read("gold.genetic_pcs").select("sample_id", "pc1", "pc2")
    if lake.exists("silver.sample_link") and lake.exists("silver.person"):
        race = (
            lake.read("silver.sample_link")
            .join(lake.read("silver.person").select("person_key", "race_source_value"), "person_key")
            .select("sample_id", F.coalesce("race_source_value", F.lit("unknown")).alias("group"))
        )
        pcs = pcs.join(race, "sample_id", "left")
    else:
        pcs = pcs.withColumn("group", F.lit("all"))
    p = pcs.fillna({"group": "not linked"}).toPandas()  # one row per sample: two numbers and a label
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g, part in p.groupby("group"):
        ax.scatter(part["pc1"], part["pc2"], s=8, label=str(g), alpha=0.8)
    ax.set(title="Genetic PCs coloured by recorded race (a proxy for ancestry)", xlabel="PC1", ylabel="PC2")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Section("<h2>Genetic principal components</h2>" + png(fig), {"pca": 1})


def gwas(plots: Mapping[str, Mapping[str, bytes]]) -> Section:
    """The "GWAS" section: for each GWAS name in ``plots`` (sorted) with a Manhattan plot (``plots[name]`` maps
    a file name of ``gwas.PNGS`` to its PNG bytes, as the gwas job left them), a sub-heading ``gwas_<name>``,
    the Manhattan plot and its QQ plot beside it when present; nothing when no name has a Manhattan plot."""
    from omicslake.genomics.gwas.plots import PNGS

    manhattan, qq = PNGS
    shown = 0
    parts = ["<h2>GWAS</h2>"]
    for name in sorted(plots):
        pngs = plots[name]
        if manhattan not in pngs:
            continue
        parts.append(
            f"<h3>{html.escape('gwas_' + name)}</h3><div class='grid'>"
            + img(pngs[manhattan], "Manhattan")
            + (img(pngs[qq], "QQ") if qq in pngs else "")
            + "</div>"
        )
        shown += 1
    return Section("".join(parts), {"gwas": shown}) if shown else Section()
