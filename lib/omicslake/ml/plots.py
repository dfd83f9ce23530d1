"""PNG plots of a model's held-out performance: ROC, PR, calibration, feature weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def model_plots(metrics: dict[str, Any], curve: dict[str, np.ndarray], weights: list[tuple[str, float]], out: Path, title: str) -> dict[str, Path]:
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.plot(curve["fpr"], curve["tpr"], color="#1f4e79", label=f"AUROC {metrics['auroc']:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.7, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths["roc"] = out / "roc.png"
    fig.savefig(paths["roc"])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.plot(curve["recall"], curve["precision"], color="#1f4e79", label=f"AUPRC {metrics['auprc']:.3f}")
    ax.axhline(metrics["prevalence"], color="grey", lw=0.7, ls="--", label=f"prevalence {metrics['prevalence']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=f"PR: {title}", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    fig.tight_layout()
    paths["pr"] = out / "pr.png"
    fig.savefig(paths["pr"])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    cal = metrics["calibration_curve"]
    ax.plot([c[0] for c in cal], [c[1] for c in cal], marker="o", color="#1f4e79",
            label=f"slope {metrics['calibration_slope']:.2f}, intercept {metrics['calibration_intercept']:.2f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.7, ls="--")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=f"Calibration: {title}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths["calibration"] = out / "calibration.png"
    fig.savefig(paths["calibration"])
    plt.close(fig)
    top = weights[:20][::-1]
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    ax.barh([t[0] for t in top], [t[1] for t in top], color=["#c0392b" if t[1] > 0 else "#1f4e79" for t in top])
    ax.set(title=f"Top features: {title}", xlabel="coefficient (standardised) or importance")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    paths["features"] = out / "feature_weights.png"
    fig.savefig(paths["features"])
    plt.close(fig)
    return paths
