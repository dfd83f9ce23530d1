"""Report sections on the genotypes: QC histograms, the genetic PCs coloured by recorded race, and
the GWAS plots the gwas job left under ``<lake>/reports/gwas_<name>/``. Per-sample QC and PC numbers
are read; no EHR row reaches the page (race only as a plot's colour groups)."""

from __future__ import annotations

import html
from pathlib import Path

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


def gwas(reports: Path) -> Section:
    """The "GWAS" section: for each ``gwas_<name>/manhattan.png`` under the folder ``reports`` (sorted), a
    sub-heading with the folder's name, the Manhattan plot and its ``qq.png`` beside it when present;
    nothing when there is none."""
    found = sorted(reports.glob("gwas_*/manhattan.png"))
    if not found:
        return Section()
    parts = ["<h2>GWAS</h2>"]
    for m in found:
        parts.append(
            f"<h3>{html.escape(m.parent.name)}</h3><div class='grid'>"
            + img(m.read_bytes(), "Manhattan")
            + (img((m.parent / "qq.png").read_bytes(), "QQ") if (m.parent / "qq.png").exists() else "")
            + "</div>"
        )
    return Section("".join(parts), {"gwas": len(found)})
