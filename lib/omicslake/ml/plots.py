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


def model_plots(
    metrics: dict[str, Any], curve: dict[str, np.ndarray], weights: list[tuple[str, float]], out: Path, title: str
) -> dict[str, Path]:
    """roc.png, pr.png, calibration.png and feature_weights.png written to ``out`` (created) from
    ``evaluate``'s metrics, ``curves``' points and ``importances``' (feature, weight) pairs (the first 20
    drawn); returns plot name -> path. TypeError when auroc or auprc is None (a one-class split)."""
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
    xs, ys = [c["mean_risk"] for c in cal], [c["observed"] for c in cal]
    # Wilson bounds at 0 of n or n of n land ~1e-17 past the observed rate: clamp to 0
    err = [[max(c["observed"] - c["lo"], 0.0) for c in cal], [max(c["hi"] - c["observed"], 0.0) for c in cal]]
    slope, icpt = metrics.get("calibration_slope"), metrics.get("calibration_intercept")
    ax.errorbar(
        xs,
        ys,
        yerr=err,
        marker="o",
        color="#1f4e79",
        capsize=2,
        label=f"slope {slope if slope is None else f'{slope:.2f}'}, intercept {icpt if icpt is None else f'{icpt:.2f}'} (95% CI per decile)",
    )
    top_ = max([*xs, *[c["hi"] for c in cal], 0.05]) * 1.05
    ax.plot([0, top_], [0, top_], color="grey", lw=0.7, ls="--")
    ax.set(xlim=(0, top_), ylim=(0, top_))
    ax.set(xlabel="mean predicted risk", ylabel="observed rate", title=f"Calibration: {title}")
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


def cluster_plots(
    silhouettes: dict[int, float], chosen: int, profile: list[dict[str, Any]], out: Path, title: str, top: int = 12
) -> dict[str, Path]:
    """Silhouette by k (chosen k marked), and a heat map of the features that set the chosen
    clusters apart most (standardised difference from the cohort mean)."""
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    ks = sorted(silhouettes)
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=110)
    ax.plot(ks, [silhouettes[k] for k in ks], marker="o", color="#1f4e79")
    ax.plot([chosen], [silhouettes[chosen]], marker="o", ms=11, mfc="none", mec="#c0392b", label=f"chosen k = {chosen}")
    ax.set(xlabel="k", ylabel="silhouette", title=f"Silhouette: {title}", xticks=ks)
    ax.legend(loc="best")
    fig.tight_layout()
    paths["silhouette"] = out / "silhouette.png"
    fig.savefig(paths["silhouette"])
    plt.close(fig)
    clusters = sorted({r["cluster"] for r in profile})
    spread: dict[str, float] = {}
    for r in profile:
        if r["smd"] is not None:
            spread[r["feature"]] = max(spread.get(r["feature"], 0.0), abs(r["smd"]))
    features = sorted(spread, key=lambda f: -spread[f])[:top]
    if features:
        grid = np.array(
            [
                [
                    next((r["smd"] or 0.0 for r in profile if r["cluster"] == c and r["feature"] == f), 0.0)
                    for c in clusters
                ]
                for f in features
            ]
        )
        fig, ax = plt.subplots(figsize=(max(6.0, 3.6 + 0.9 * len(clusters)), 1.4 + 0.32 * len(features)), dpi=110)
        lim = max(float(np.abs(grid).max()), 0.1)
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        sizes = {r["cluster"]: r["n"] for r in profile}
        ax.set_xticks(range(len(clusters)), [f"{c}\n(n={sizes[c]:,})" for c in clusters], fontsize=7)
        ax.set_yticks(range(len(features)), features, fontsize=7)
        ax.set_title(f"Cluster profiles (SMD): {title}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        paths["profiles"] = out / "cluster_profiles.png"
        fig.savefig(paths["profiles"])
        plt.close(fig)
    return paths


def km_plot(curves: dict[str, dict[str, np.ndarray]], c_index: float | None, out: Path, title: str) -> Path:
    """Kaplan-Meier step curves, one per predicted risk group."""
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    order = {"high": 0, "medium": 1, "low": 2}
    for g, cur in sorted(curves.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])):
        ax.step(
            np.concatenate([[0.0], cur["t"]]),
            np.concatenate([[1.0], cur["s"]]),
            where="post",
            label=f"{g} (n={int(cur['n'][0]):,})",
        )
    sub = f" (held-out C = {c_index:.3f})" if c_index is not None else ""
    ax.set(xlabel="days since index", ylabel="event-free", title=f"Kaplan-Meier by predicted risk{sub}\n{title}")
    ax.title.set_fontsize(9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = out / "km_by_risk.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def survival_calibration_plot(groups: list[dict[str, Any]], horizon: float, out: Path, title: str) -> Path:
    """Predicted risk by ``horizon`` against the Kaplan-Meier observed risk (95 % CIs) per risk group
    of ``survival.calibration``, with the diagonal; survival_calibration.png in ``out``."""
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    pred = np.array([g["predicted"] for g in groups])
    obs = np.array([g["observed"] for g in groups])
    lo = obs - np.array([g["observed_lower"] for g in groups])
    hi = np.array([g["observed_upper"] for g in groups]) - obs
    top = float(max([*pred, *(obs + hi), 1e-3])) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=0.7, ls="--")
    ax.errorbar(pred, obs, yerr=[lo, hi], fmt="o", color="#1f4e79", ms=4, capsize=2)
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel=f"predicted risk by day {horizon:g}",
        ylabel="observed (Kaplan-Meier)",
        title=f"Calibration by risk decile\n{title}",
    )
    ax.title.set_fontsize(9)
    fig.tight_layout()
    path = out / "survival_calibration.png"
    fig.savefig(path)
    plt.close(fig)
    return path
