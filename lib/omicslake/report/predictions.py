"""Report section on batch scoring: per ``gold.predictions_<model>`` table, the latest scored batch's
risk bands and the drift checks of its scoring run (population stability index of the risk and of
every feature against the training data, warnings above ``jobs.score.psi_warn``)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from pyspark.sql import functions as F

from omicslake.io.delta import Lake
from omicslake.report.render import Section, table


def predictions(lake: Lake, tables: Sequence[str]) -> Section:
    """The "Risk predictions: <model>" sections: for each predictions table among ``tables`` (the lake's
    names), patients and mean risk per band of its newest (model version, input version), and the drift
    metrics and warnings of the last succeeded score run; nothing when no predictions table exists."""
    parts: list[str] = []
    warnings = 0
    runs = (
        lake.read("ops.runs").where((F.col("job") == "score") & (F.col("status") == "succeeded"))
        if lake.exists("ops.runs")
        else None
    )
    for name in sorted(t for t in tables if t.startswith("gold.predictions_")):
        model = name.split("predictions_", 1)[1]
        df = lake.read(name)
        newest = df.agg(F.max(F.struct("model_version", "input_version")).alias("k")).first()
        if newest is None or newest["k"] is None:
            continue
        mv, iv = newest["k"]["model_version"], newest["k"]["input_version"]
        batch = df.where((F.col("model_version") == mv) & (F.col("input_version") == iv))
        bands = (
            batch.groupBy("risk_band")
            .agg(F.count(F.lit(1)).alias("patients"), F.round(F.avg("risk"), 4).alias("mean_risk"))
            .orderBy("mean_risk")
            .collect()
        )  # one row per band
        out = [
            f"<h2>Risk predictions: {html.escape(model)}</h2><p>Model version {mv}, input version {iv}: "
            "calibrated risk by band.</p>",
            table(bands, ["risk_band", "patients", "mean_risk"]),
        ]
        last = None
        if runs is not None:
            last = (
                runs.where((F.col("metrics")["model"] == json.dumps(model)) & F.col("metrics")["psi_risk"].isNotNull())
                .orderBy(F.col("started_at").desc())
                .select("run_id", "metrics")
                .first()
            )
        if last is not None:
            m = {k: json.loads(v) for k, v in last["metrics"].items()}
            drift = [{"check": "risk distribution", "psi": m.get("psi_risk")}]
            drift.append({"check": f"largest feature ({m.get('psi_max_feature')})", "psi": m.get("psi_max")})
            drift.append({"check": "features above the threshold", "psi": m.get("psi_features_over")})
            out.append(f"<p>Drift of score run {html.escape(str(last['run_id']))} against the training data:</p>")
            out.append(table(drift, ["check", "psi"]))
            found = m.get("drift_warnings") or []
            warnings += len(found)
            if found:
                items = "".join(f"<li>{html.escape(str(w))}</li>" for w in found[:20])
                out.append(f"<p><strong>Drift warnings</strong></p><ul>{items}</ul>")
        parts.append("".join(out))
    if not parts:
        return Section()
    return Section("".join(parts), {"prediction_tables": len(parts), "drift_warnings": warnings})
