"""Report sections on surveys: study completeness (gold.survey_completeness) and the scales'
psychometrics (gold.scale_reliability, gold.scale_retest, a heat map of gold.scale_loadings).
Aggregates only: no participant's value reaches the page."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.report.render import Section, png, pyplot, table


def _fmt(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def completeness(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Study completeness" section: gold.survey_completeness by project, event, instrument and
    site (the column shown when some record has a data access group); nothing when the table is
    absent or empty."""
    if "gold.survey_completeness" not in tables:
        return Section()
    rows = lake.read("gold.survey_completeness").orderBy("project", "event", "instrument", "site").collect()
    if not rows:
        return Section()
    shown = [
        {
            **{k: r[k] if r[k] is not None else "" for k in ("project", "event", "instrument", "site", "participants")},
            "answered": r.answered,
            "missing": r.missing,
            "not shown": r.not_shown,
            "refused": r.invalid,
            "completeness": _fmt(r.completeness),
            "forms complete": _fmt(r.forms_complete_share),
        }
        for r in rows
    ]
    cols = [
        "project",
        "event",
        "instrument",
        *(["site"] if any(r.site is not None for r in rows) else []),
        "participants",
        "answered",
        "missing",
        "not shown",
        "refused",
        "completeness",
        "forms complete",
    ]
    return Section("<h2>Study completeness</h2>" + table(shown, cols), {"survey_forms": len(rows)})


def scales(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Scales" section: reliability per scale, subscale and event (alpha with its interval,
    omega, floor / ceiling, factors), test-retest ICCs, and a loading heat map per scale (first event)."""
    if "gold.scale_reliability" not in tables:
        return Section()
    rel = lake.read("gold.scale_reliability").orderBy("scale", "subscale", "event").collect()
    if not rel:
        return Section()
    shown = [
        {
            "scale": r.scale,
            "subscale": r.subscale,
            "event": r.event or "",
            "n": r.n,
            "items": r.items,
            "alpha [CI]": f"{_fmt(r.alpha)} [{_fmt(r.alpha_ci_low)}, {_fmt(r.alpha_ci_high)}]",
            "omega": _fmt(r.omega),
            "floor": _fmt(r.floor_share),
            "ceiling": _fmt(r.ceiling_share),
            "factors": r.n_factors,
        }
        for r in rel
    ]
    html = "<h2>Scales</h2>" + table(shown, list(shown[0]))
    if "gold.scale_retest" in tables:
        rt = lake.read("gold.scale_retest").orderBy("scale", "subscale").collect()
        if rt:
            html += "<h3>Test-retest</h3>" + table(
                [
                    {
                        "scale": r.scale,
                        "subscale": r.subscale,
                        "events": f"{r.event_1} / {r.event_2}",
                        "n": r.n,
                        "ICC(A,1)": _fmt(r.icc_a1),
                        "ICC(C,1)": _fmt(r.icc_c1),
                    }
                    for r in rt
                ],  # fmt: skip
                ["scale", "subscale", "events", "n", "ICC(A,1)", "ICC(C,1)"],
            )
    heatmaps = 0
    if "gold.scale_loadings" in tables:
        loadings = lake.read("gold.scale_loadings")
        first = loadings.groupBy("scale").agg(F.min("event").alias("event")).collect()  # one row per scale
        for s in sorted(first, key=lambda r: r.scale):
            rows = loadings.where((F.col("scale") == s.scale) & F.col("event").eqNullSafe(s.event)).collect()
            items = sorted({r.item for r in rows})
            factors = sorted({r.factor for r in rows})
            grid = [
                [next((r.loading for r in rows if r.item == i and r.factor == f), 0.0) for f in factors] for i in items
            ]
            plt = pyplot()
            fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(factors), 0.4 * len(items) + 1))
            im = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            ax.set_yticks(range(len(items)), items)
            ax.set_xticks(range(len(factors)), [f"F{f}" for f in factors])
            ax.set_title(f"{s.scale} loadings ({s.event or 'all'})")
            fig.colorbar(im, ax=ax)
            html += png(fig)
            heatmaps += 1
    distributions = 0
    if "gold.scale_items" in tables and "silver.survey_values" in tables:
        # response distributions of each scale's items (answered values, every event): a stacked bar per item
        items = lake.read("gold.scale_items").select("scale", "item").distinct().collect()  # items x scales
        by_scale: dict[str, list[str]] = {}
        for r in items:
            by_scale.setdefault(r.scale, []).append(r.item)
        counts = (
            lake.read("silver.survey_values")
            .where((F.col("status") == "answered") & F.col("field").isin([r.item for r in items]))
            .groupBy("field", "value")
            .count()
            .collect()
        )  # items x response levels
        for scale in sorted(by_scale):
            names = sorted(set(by_scale[scale]))
            levels = sorted({c.value for c in counts if c.field in names}, key=lambda v: (len(v), v))
            if not levels:
                continue
            n = {(c.field, c.value): c["count"] for c in counts}
            plt = pyplot()
            fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
            left = [0.0] * len(names)
            for level in levels:
                totals = [sum(n.get((i, v), 0) for v in levels) or 1 for i in names]
                share = [n.get((i, level), 0) / t for i, t in zip(names, totals, strict=True)]
                ax.barh(names, share, left=left, label=level)
                left = [a + b for a, b in zip(left, share, strict=True)]
            ax.set_xlim(0, 1)
            ax.set_xlabel("share of answers")
            ax.set_title(f"{scale}: item responses")
            ax.legend(
                title="response", ncol=len(levels), fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.25)
            )
            fig.tight_layout()
            html += png(fig)
            distributions += 1
    return Section(
        html,
        {"scales": len({r.scale for r in rel}), "loading_heatmaps": heatmaps, "item_distributions": distributions},
    )


def study_qa(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Study QA" section: visit-window deviations per visit (gold.survey_visit_windows), enrolment per
    month (gold.survey_enrolment) and the data queries per record (quarantine.survey_values: participant
    pseudonym, event, field, rule, reason; never a value), the first 200; nothing when none of them exists."""
    from pyspark.sql import functions as F

    from omicslake.survey.qa import queries

    parts, found = [], {}
    if "gold.survey_visit_windows" in tables:
        dev = (
            lake.read("gold.survey_visit_windows")
            .groupBy("project", "event", "field", "anchor", "min_days", "max_days")
            .agg(
                F.count("*").alias("visits"),
                F.sum((F.col("deviation") == "early").cast("int")).alias("early"),
                F.sum((F.col("deviation") == "late").cast("int")).alias("late"),
                F.sum(F.col("deviation").startswith("no_").cast("int")).alias("no date"),
            )
            .orderBy("project", "event", "field")
            .collect()
        )
        cols = ["project", "event", "field", "anchor", "min_days", "max_days", "visits", "early", "late", "no date"]
        parts.append("<h3>Visit windows</h3>" + table(dev, cols))
        found["visit_windows"] = len(dev)
    if "gold.survey_enrolment" in tables:
        months = lake.read("gold.survey_enrolment").orderBy("project", "month").collect()
        parts.append("<h3>Enrolment</h3>" + table(months, ["project", "month", "enrolled", "cumulative"]))
        found["enrolment_months"] = len(months)
    if "quarantine.survey_values" in tables:
        q = queries(lake.read("quarantine.survey_values"))
        n = q.count()
        rows = q.orderBy("participant_key", "event", "field").limit(200).collect()
        cols = ["participant_key", "event", "instrument", "instance", "field", "rule", "reason"]
        more = f" (the first 200 of {n})" if n > 200 else ""
        parts.append(f"<h3>Data queries{more}</h3>" + table(rows, cols))
        found["survey_queries"] = n
    if not parts:
        return Section()
    return Section("<h2>Study QA</h2>" + "".join(parts), found)
