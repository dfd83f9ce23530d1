"""Report section on the comparative effect studies (``gold.study_<name>_*``, the study job).

Per study: its attrition, the hazard ratios (crude and adjusted, calibrated), the mediation effects
(when the design has one), and six static plots:
PS overlap (preference score distributions by arm), a love plot (|SMD| before and after adjustment),
Kaplan-Meier by arm, a forest plot of the estimates and subgroups (effect modification), the
negative-control calibration plot (estimates against their standard errors with the empirical null),
and the incidence table. Only aggregates reach the page: the preference scores are binned on Spark.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.report.render import Section, png, pyplot, table

BINS = 40
ARM_COLOURS = {"target": "#b03a2e", "comparator": "#1f4e79"}


def study_names(tables: Sequence[str]) -> list[str]:
    """The studies with an estimates table among the lake's ``tables`` (names ``gold.study_<name>_estimates``)."""
    pre, post = "gold.study_", "_estimates"
    return sorted(t[len(pre) : -len(post)] for t in tables if t.startswith(pre) and t.endswith(post))


def overlap_plot(bins: list[dict[str, Any]], name: str) -> str:
    """Preference score distributions of the two arms (``bins``: arm, bin 0..BINS-1, n) as shares."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for arm in sorted({b["arm"] for b in bins}):
        rows = [b for b in bins if b["arm"] == arm]
        total = sum(b["n"] for b in rows) or 1
        xs = [(b["bin"] + 0.5) / BINS for b in rows]
        ax.bar(xs, [b["n"] / total for b in rows], width=1 / BINS, alpha=0.5, label=arm)
    ax.axvspan(0.3, 0.7, color="#ccc", alpha=0.25, label="equipoise 0.3-0.7")
    ax.set(title=f"{name}: preference score", xlabel="preference score", ylabel="share of arm", xlim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, "preference score overlap")


def love_plot(balance: list[dict[str, Any]], name: str) -> str:
    """|SMD| of each covariate before adjustment and after each analysis, with the 0.1 line."""
    plt = pyplot()
    terms = sorted({b["term"] for b in balance})
    fig, ax = plt.subplots(figsize=(5, 0.6 + 0.45 * len(terms) + 1))
    y = {t: i for i, t in enumerate(terms)}
    before = {b["term"]: b["smd_before"] for b in balance}
    ax.scatter([abs(before[t] or 0) for t in terms], [y[t] for t in terms], marker="o", color="black", label="before")
    marks = {"iptw": "s", "matching": "^", "stratification": "D"}
    for analysis in sorted({b["analysis"] for b in balance} - {"crude"}):
        rows = [b for b in balance if b["analysis"] == analysis and b["smd_after"] is not None]
        ax.scatter(
            [abs(b["smd_after"]) for b in rows],
            [y[b["term"]] for b in rows],
            marker=marks.get(analysis, "x"),
            label=analysis,
        )
    ax.axvline(0.1, color="#b03a2e", ls="--", lw=1)
    ax.set_yticks(range(len(terms)), terms)
    ax.set(title=f"{name}: covariate balance", xlabel="|standardised mean difference|")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, "covariate balance (love plot)")


def km_plot(km: list[dict[str, Any]], name: str, outcome: str) -> str:
    """Kaplan-Meier curves of ``outcome`` by arm (crude) with the numbers at risk in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for arm in sorted({r["arm"] for r in km}):
        rows = sorted((r for r in km if r["arm"] == arm), key=lambda r: r["days"])
        xs = [0] + [r["days"] for r in rows]
        ys = [1.0] + [r["survival"] for r in rows]
        ax.step(
            xs, ys, where="post", color=ARM_COLOURS.get(arm), label=f"{arm} (n={rows[0]['at_risk'] if rows else 0})"
        )
    ax.set(title=f"{name}: {outcome} (Kaplan-Meier)", xlabel="days from the first exposure", ylabel="event-free")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, f"Kaplan-Meier: {outcome}")


def forest_plot(rows: list[dict[str, Any]], name: str, truth: float | None = None) -> str:
    """Hazard ratios with 95% CIs on a log axis, one line per ``rows`` entry (label, hr, hr_lower, hr_upper)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.32 * len(rows)))
    ok = [r for r in rows if r["hr"] and r["hr_lower"] and r["hr_upper"]]
    for i, r in enumerate(reversed(ok)):
        ax.plot([r["hr_lower"], r["hr_upper"]], [i, i], color="#1f4e79")
        ax.plot([r["hr"]], [i], "s", color="#1f4e79")
    ax.set_yticks(range(len(ok)), [r["label"] for r in reversed(ok)], fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    lo = min([r["hr_lower"] for r in ok] + [0.5])
    hi = max([r["hr_upper"] for r in ok] + [2.0])
    ticks = [t for t in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0) if lo / 1.5 <= t <= hi * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(title=f"{name}: hazard ratios (95% CI)", xlabel="hazard ratio")
    fig.tight_layout()
    return png(fig, "forest plot")


def calibration_plot(estimates: list[dict[str, Any]], name: str, analysis: str) -> str:
    """The negative controls' log HR against their SE with the empirical null (mean and the 95%
    band of N(mu, sigma^2 + se^2)) and the outcomes' estimates of ``analysis``."""
    plt = pyplot()
    rows = [e for e in estimates if e["analysis"] == analysis and e["se"] is not None and e["log_hr"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    nc = [e for e in rows if e["negative_control"]]
    out = [e for e in rows if not e["negative_control"]]
    ax.scatter([e["se"] for e in nc], [e["log_hr"] for e in nc], color="#1f4e79", label="negative controls")
    ax.scatter([e["se"] for e in out], [e["log_hr"] for e in out], color="#b03a2e", marker="D", label="outcomes")
    mu = next((e["null_mean"] for e in rows if e["null_mean"] is not None), None)
    sd = next((e["null_sd"] for e in rows if e["null_sd"] is not None), None)
    top = max([e["se"] for e in rows] + [0.1]) * 1.2
    ses = [top * i / 50 for i in range(51)]
    ax.plot(ses, [1.96 * s for s in ses], color="#999", ls=":", lw=1, label="nominal 95%")
    ax.plot(ses, [-1.96 * s for s in ses], color="#999", ls=":", lw=1)
    if mu is not None and sd is not None:
        ax.axhline(mu, color="#1e7b34", lw=1, label=f"empirical null mean {mu:.2f}")
        ax.plot(ses, [mu + 1.96 * math.sqrt(sd**2 + s**2) for s in ses], color="#1e7b34", ls="--", lw=1)
        ax.plot(ses, [mu - 1.96 * math.sqrt(sd**2 + s**2) for s in ses], color="#1e7b34", ls="--", lw=1)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(title=f"{name}: calibration ({analysis})", xlabel="standard error", ylabel="log hazard ratio")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, f"calibration: {analysis}")


def _round(v: Any, k: int = 3) -> Any:
    return None if v is None else round(float(v), k)


def studies(lake: Lake, tables: Sequence[str]) -> Section:
    """A "Study: <name>" section for each study with tables in the lake (see the module docstring).
    Counts ``studies`` and ``study_plots`` (images shown) when there is one."""
    names = study_names(tables)
    parts: list[str] = []
    n_plots = 0
    for name in names:
        pre = f"gold.study_{name}_"
        est = [r.asDict() for r in lake.read(pre + "estimates").collect()]
        bal = [r.asDict() for r in lake.read(pre + "balance").collect()]
        parts.append(f"<h2>Study: {html.escape(name)}</h2>")
        if pre + "attrition" in tables:
            steps = [r.asDict() for r in lake.read(pre + "attrition").orderBy("step_no").collect()]
            parts.append("<h3>Population</h3>" + table(steps, ["step_no", "step", "persons"]))
        main = sorted((e for e in est if not e["negative_control"]), key=lambda e: (e["outcome"], e["analysis"]))
        shown = [
            {
                **{k: e[k] for k in ("outcome", "analysis", "persons", "events")},
                "HR (95% CI)": f"{e['hr']:.2f} ({e['hr_lower']:.2f}-{e['hr_upper']:.2f})" if e["hr"] else "",
                "p": _round(e["p"], 4),
                "calibrated CI": (
                    f"{e['calibrated_hr_lower']:.2f}-{e['calibrated_hr_upper']:.2f}" if e["calibrated_hr_lower"] else ""
                ),
                "calibrated p": _round(e["calibrated_p"], 4),
            }
            for e in main
        ]
        parts.append(
            "<h3>Hazard ratios</h3>"
            + table(
                shown, ["outcome", "analysis", "persons", "events", "HR (95% CI)", "p", "calibrated CI", "calibrated p"]
            )
        )
        if pre + "mediation" in tables:
            med = [
                {
                    **{k: r[k] for k in ("effect", "mediator", "outcome", "window_days", "persons", "events")},
                    "estimate (95% CI)": (
                        f"{r['estimate']:.4f} ({r['lower']:.4f} to {r['upper']:.4f})"
                        if r["estimate"] is not None
                        else ""
                    ),
                }
                for r in lake.read(pre + "mediation").orderBy("effect").collect()
            ]
            parts.append(
                "<h3>Mediation: natural indirect (nie) and direct (nde) effects, risk difference</h3>"
                + table(med, ["effect", "mediator", "outcome", "window_days", "persons", "events", "estimate (95% CI)"])
            )
        imgs: list[str] = []
        if pre + "ps" in tables:
            b = F.least(F.floor(F.col("preference") * BINS), F.lit(BINS - 1)).cast("int")
            bins = [
                r.asDict()
                for r in lake.read(pre + "ps")
                .groupBy(F.when(F.col("target") == 1, "target").otherwise("comparator").alias("arm"), b.alias("bin"))
                .agg(F.count(F.lit(1)).alias("n"))
                .orderBy("arm", "bin")
                .collect()
            ]
            imgs.append(overlap_plot(bins, name))
        imgs.append(love_plot(bal, name))
        if pre + "km" in tables:
            km = [r.asDict() for r in lake.read(pre + "km").collect()]
            for outcome in sorted({r["outcome"] for r in km}):
                imgs.append(km_plot([r for r in km if r["outcome"] == outcome], name, outcome))
        forest = [{"label": f"{e['outcome']} · {e['analysis']}", **e} for e in main]
        if pre + "modification" in tables:
            mods = [
                r.asDict()
                for r in lake.read(pre + "modification").orderBy("outcome", "analysis", "modifier", "level").collect()
            ]
            forest += [
                {"label": f"{m['outcome']} · {m['analysis']} · {m['modifier']}={m['level']}", **m}
                for m in mods
                if m["level"] != "interaction"
            ]
        imgs.append(forest_plot(forest, name))
        analyses = {e["analysis"] for e in est if e["null_mean"] is not None}
        for analysis in [a for a in ("iptw", "matching", "stratification", "crude") if a in analyses][:1]:
            imgs.append(calibration_plot(est, name, analysis))
        n_plots += len(imgs)
        parts.append("<div class='grid'>" + "".join(imgs) + "</div>")
        if pre + "incidence" in tables:
            inc = [
                {**r.asDict(), **{k: _round(r[k], 2) for k in ("person_years", "rate", "rate_lower", "rate_upper")}}
                for r in lake.read(pre + "incidence").orderBy("outcome", "by", "level", "arm").collect()
            ]
            parts.append(
                "<h3>Incidence per 1,000 person-years (exact 95% CI)</h3>"
                + table(
                    inc,
                    [
                        "outcome",
                        "by",
                        "level",
                        "arm",
                        "persons",
                        "events",
                        "person_years",
                        "rate",
                        "rate_lower",
                        "rate_upper",
                    ],
                )
            )
    return Section("".join(parts), {"studies": len(names), "study_plots": n_plots} if names else {})
