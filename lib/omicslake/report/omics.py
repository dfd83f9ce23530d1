"""Report section on omics: per assay, PC1 against PC2 of the samples (``omics.pca`` on the most
variable normalised features of silver.omics_<assay>, the passing samples coloured by consent), and
per association table a volcano plot (gold.omics_assoc_<name>: beta against -log10 p, the features
significant at the configured FDR highlighted). Per-sample PC numbers and per-feature statistics
only: no person's value reaches the page."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.report.render import Section, png, pyplot

PCA_FEATURES = 500  # the most variable features of an assay its report PCA uses


def omics(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Omics" section: a PCA scatter per assay (silver.omics_<assay> with its samples table) and a
    volcano plot per gold.omics_assoc_<name>; nothing when neither exists. ``found``: omics_pca and
    volcano counts."""
    from omicslake.omics import pca

    assays = sorted(
        t.split("silver.omics_", 1)[1] for t in tables if t.startswith("silver.omics_") and "samples_" not in t
    )
    assays = [a for a in assays if f"silver.omics_samples_{a}" in tables]
    assocs = sorted(t for t in tables if t.startswith("gold.omics_assoc_"))
    html, n_pca, n_volcano = "", 0, 0
    plt = pyplot()
    for a in assays:
        g = pca.gram(lake.read(f"silver.omics_{a}"), PCA_FEATURES)
        if g.shape[0] < 3:
            continue
        s, vals = pca.scores(g, 2)
        samples = (
            lake.read(f"silver.omics_samples_{a}").where(F.col("position").isNotNull()).select("position", "consent")
        ).collect()  # one row per passing sample
        consent = np.zeros(g.shape[0], dtype=bool)
        for r in samples:
            consent[r.position] = bool(r.consent)
        share = vals / max(float(np.trace(g)), 1e-300)
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        for flag, label in ((True, "consented"), (False, "not consented / not linked")):
            ax.scatter(s[consent == flag, 0], s[consent == flag, 1], s=8, alpha=0.8, label=label)
        ax.set(title=f"{a}: samples on PC1 and PC2", xlabel=f"PC1 ({share[0]:.0%})", ylabel=f"PC2 ({share[1]:.0%})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        html += f"<h3>PCA: {a}</h3>" + png(fig)
        n_pca += 1
    for t in assocs:
        r = lake.read(t).where(F.col("p").isNotNull()).select("beta", "p", "significant").toPandas()  # per feature
        if r.empty:
            continue
        sig = r["significant"].fillna(False).astype(bool).to_numpy()
        y = -np.log10(np.clip(r["p"].to_numpy(dtype=float), 1e-300, 1.0))
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ax.scatter(r["beta"][~sig], y[~sig], s=5, alpha=0.5, color="grey", label="not significant")
        ax.scatter(r["beta"][sig], y[sig], s=7, alpha=0.8, color="crimson", label=f"FDR significant ({int(sig.sum())})")
        ax.set(title=f"{t.split('gold.omics_assoc_', 1)[1]}: volcano", xlabel="beta", ylabel="-log10 p")
        ax.legend(fontsize=7)
        fig.tight_layout()
        html += f"<h3>Volcano: {t.split('gold.omics_assoc_', 1)[1]}</h3>" + png(fig)
        n_volcano += 1
    if not html:
        return Section()
    return Section("<h2>Omics</h2>" + html, {"omics_pca": n_pca, "volcano": n_volcano})
