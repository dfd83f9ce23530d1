"""GWAS summaries: genomic inflation (lambda GC) and the Manhattan and QQ plots."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from omicslake.io.layout import Layout

PNGS = ("manhattan.png", "qq.png")  # the files ``plots`` makes, in the folder ``plots_location`` names


def plots_location(layout: Layout, name: str, plots_dirs: Mapping[str, str], file_name: str = "") -> str:
    """Where the plots of ``gold.gwas_<name>`` are (with ``file_name``: that file there): ``plots_dirs[name]``
    when set (jobs.gwas.plots_dir by the configured GWAS's name; ``~`` expanded unless it is a URI), else
    ``<layout's root>/reports/gwas_<name>``. A folder or an object-store URI."""
    plots_dir = plots_dirs.get(name)
    if plots_dir:
        folder = plots_dir if "://" in plots_dir else str(Path(plots_dir).expanduser())
    else:
        folder = layout.reports(f"gwas_{name}")
    return f"{folder.rstrip('/')}/{file_name}" if file_name else folder


def lambda_gc(p: np.ndarray) -> float:
    """Genomic inflation: median chi-square (1 df) of the p-values over its null median 0.4549."""
    p = p[np.isfinite(p) & (p > 0)]
    if len(p) == 0:
        return float("nan")
    return float(np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1))


def plots(results: pd.DataFrame, title: str) -> dict[str, bytes]:
    """Manhattan and QQ plots from (contig, position, neg_log10_p): file name (``PNGS``) -> PNG bytes."""
    manhattan_png, qq_png = PNGS
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig: object) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")  # type: ignore[attr-defined]
        plt.close(fig)  # type: ignore[arg-type]
        return buf.getvalue()

    r = results[np.isfinite(results["neg_log10_p"])].copy()
    r["_c"] = r["contig"].str.replace("chr", "", regex=False)
    r["_order"] = pd.to_numeric(r["_c"].replace({"X": "23", "Y": "24", "MT": "25", "M": "25"}), errors="coerce").fillna(
        99
    )
    r = r.sort_values(["_order", "_c", "position"])
    fig, ax = plt.subplots(figsize=(11, 4), dpi=110)
    offset, ticks, labels = 0.0, [], []
    for i, (c, grp) in enumerate(r.groupby(["_order", "_c"], sort=False)):
        x = grp["position"].to_numpy(float) + offset
        ax.scatter(x, grp["neg_log10_p"], s=5, color="#1f4e79" if i % 2 == 0 else "#6fa8dc", linewidths=0)
        ticks.append((x.min() + x.max()) / 2)
        labels.append(c[1])
        offset = x.max() + 1
    ax.axhline(-math.log10(5e-8), color="#c0392b", lw=0.8, ls="--", label="5e-8")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlabel("chromosome")
    ax.set_ylabel("-log10 p")
    ax.set_title(f"Manhattan: {title}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    manhattan = png(fig)

    obs = np.sort(r["neg_log10_p"].to_numpy())[::-1]
    exp = -np.log10((np.arange(1, len(obs) + 1) - 0.5) / max(len(obs), 1))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.scatter(exp, obs, s=5, color="#1f4e79", linewidths=0)
    top = max(exp.max(initial=1), obs.max(initial=1))
    ax.plot([0, top], [0, top], color="#c0392b", lw=0.8)
    lam = lambda_gc(np.power(10.0, -obs))
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel("observed -log10 p")
    ax.set_title(f"QQ: {title} (lambda GC {lam:.3f})")
    fig.tight_layout()
    return {manhattan_png: manhattan, qq_png: png(fig)}
