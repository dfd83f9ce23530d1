"""A static risk page a clinician can read: one self-contained HTML file per cohort and model.

A list sortable by risk (click a column head), each row the pseudonymous key, the risk with its
band and the top reasons in words; clicking a row opens the patient's panel: the largest
contributions as a bar chart (inline SVG) and the patient's recent labs over time (inline SVG
per lab; ``#p=<key>`` in the address opens a patient's panel). Pure: rows in, an HTML string out. Only pseudonymous keys, shifted dates and lab
values (already in silver) appear; no direct identifier is in any input.
"""

from __future__ import annotations

import html
import json
from typing import Any

from omicslake.ml.risk import LAB_NAMES, feature_words

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem auto;max-width:1200px;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem}.meta{color:#555;font-size:.85rem}
table{border-collapse:collapse;font-size:.85rem;width:100%;margin-top:1rem}td,th{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8;cursor:pointer;user-select:none;position:sticky;top:0}th:hover{background:#e6eaf0}
tr.row:hover{background:#f8fafc;cursor:pointer}tr.sel{background:#eef4fb}.key{font-family:ui-monospace,monospace;font-size:.8rem}
.band{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:.75rem;color:#fff}
.b0{background:#2e7d32}.b1{background:#e0a100}.b2{background:#c62828}.b3{background:#6a1b9a}
ul.why{margin:0;padding-left:1rem}.up{color:#b03a2e}.down{color:#1f5f99}
#panel{position:fixed;right:1rem;top:1rem;width:440px;max-height:92vh;overflow:auto;background:#fff;border:1px solid #ccc;
box-shadow:0 4px 18px rgba(0,0,0,.15);padding:1rem;display:none}#panel h2{font-size:1.05rem;margin:.1rem 0 .5rem}
#panel h3{font-size:.9rem;margin:.8rem 0 .2rem}.close{float:right;cursor:pointer;border:none;background:none;font-size:1.2rem}"""

JS = """const DATA = JSON.parse(document.getElementById('data').textContent);
const bandIx = {}; DATA.bands.forEach((b, i) => bandIx[b] = i);
let sortKey = 'risk', desc = true;
function esc(s){return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function render(){
  const rows = DATA.patients.slice().sort((a, b) => {
    const x = sortKey === 'band' ? bandIx[a.band] : a[sortKey], y = sortKey === 'band' ? bandIx[b.band] : b[sortKey];
    return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);});
  document.getElementById('rows').innerHTML = rows.map(p => `<tr class="row" data-k="${esc(p.key)}"><td class="key" title="${esc(p.key)}">${esc(p.key.slice(0, 12))}</td>`
    + `<td>${(100 * p.risk).toFixed(1)} %</td><td><span class="band b${bandIx[p.band]}">${esc(p.band)}</span></td>`
    + `<td><ul class="why">${p.reasons.map(r => `<li class="${r.c > 0 ? 'up' : 'down'}">${esc(r.text)}</li>`).join('')}</ul></td></tr>`).join('');
  document.querySelectorAll('tr.row').forEach(tr => tr.onclick = () => show(tr.dataset.k, tr));
  document.querySelectorAll('th').forEach(th => th.textContent = th.dataset.label + (th.dataset.sort === sortKey ? (desc ? ' \\u25BC' : ' \\u25B2') : ''));
}
function bars(f){
  if (!f.length) return '<p>no contributions recorded</p>';
  const w = 420, h = 22 * f.length + 10, mid = 210, m = Math.max(...f.map(x => Math.abs(x.c)), 1e-9);
  return `<svg width="${w}" height="${h}" role="img" aria-label="factor chart">` + f.map((x, i) => {
    const len = 150 * Math.abs(x.c) / m, y = 5 + 22 * i, left = x.c > 0 ? mid : mid - len;
    return `<rect x="${left}" y="${y}" width="${len}" height="14" fill="${x.c > 0 ? '#c0392b' : '#1f5f99'}"></rect>`
      + `<text x="${x.c > 0 ? mid - 4 : mid + 4}" y="${y + 11}" font-size="10" text-anchor="${x.c > 0 ? 'end' : 'start'}">${esc(x.label)}</text>`;
  }).join('') + `<line x1="${mid}" x2="${mid}" y1="0" y2="${h}" stroke="#888"></line></svg>`;
}
function spark(lab){
  const v = lab.points.map(p => p[1]), t = lab.points.map(p => Date.parse(p[0]));
  const w = 400, h = 70, lo = Math.min(...v), hi = Math.max(...v), t0 = Math.min(...t), t1 = Math.max(...t);
  const X = x => 30 + (t1 > t0 ? (x - t0) / (t1 - t0) : 0.5) * (w - 40), Y = y => 10 + (hi > lo ? (hi - y) / (hi - lo) : 0.5) * (h - 25);
  const pts = lab.points.map(p => `${X(Date.parse(p[0])).toFixed(1)},${Y(p[1]).toFixed(1)}`);
  return `<svg width="${w}" height="${h}" role="img" aria-label="${esc(lab.name)} over time"><polyline fill="none" stroke="#1f4e79" stroke-width="1.5" points="${pts.join(' ')}"></polyline>`
    + pts.map(p => `<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="2.5" fill="#1f4e79"></circle>`).join('')
    + `<text x="0" y="${h - 2}" font-size="9">${esc(lab.points[0][0])}</text><text x="${w}" y="${h - 2}" font-size="9" text-anchor="end">${esc(lab.points[lab.points.length - 1][0])}</text>`
    + `<text x="0" y="12" font-size="9">${hi.toPrecision(3)}</text><text x="0" y="${h - 14}" font-size="9">${lo.toPrecision(3)}</text></svg>`;
}
function show(k, tr){
  const p = DATA.patients.find(x => x.key === k);
  document.querySelectorAll('tr.sel').forEach(x => x.classList.remove('sel')); tr.classList.add('sel');
  const labs = (DATA.labs[k] || []);
  document.getElementById('panel').innerHTML = `<button class="close" onclick="this.parentNode.style.display='none'">\\u00D7</button>`
    + `<h2>Patient ${esc(k.slice(0, 12))}\\u2026: ${(100 * p.risk).toFixed(1)} % <span class="band b${bandIx[p.band]}">${esc(p.band)}</span></h2>`
    + `<ul class="why">${p.reasons.map(r => `<li class="${r.c > 0 ? 'up' : 'down'}">${esc(r.text)}</li>`).join('')}</ul>`
    + `<h3>What moves this risk (red raises, blue lowers)</h3>` + bars(p.factors)
    + `<h3>Recent labs</h3>` + (labs.length ? labs.map(l => `<div><b>${esc(l.name)}</b> (${esc(l.unit)})<br>${spark(l)}</div>`).join('') : '<p>none recorded</p>');
  document.getElementById('panel').style.display = 'block';
}
document.querySelectorAll('th').forEach(th => th.onclick = () => { if (sortKey === th.dataset.sort) desc = !desc; else { sortKey = th.dataset.sort; desc = th.dataset.sort !== 'key'; } render(); });
render();
if (location.hash.startsWith('#p=')) { const k = decodeURIComponent(location.hash.slice(3)); const tr = document.querySelector(`tr.row[data-k="${k}"]`); if (tr) show(k, tr); }"""


def risk_page(
    title: str,
    subtitle: str,
    patients: list[dict[str, Any]],
    labs: dict[str, list[dict[str, Any]]],
    bands: list[str],
    units: dict[str, str],
) -> str:
    """patients: {key, risk, band, reasons: [{text, contribution}], contributions: {feature: value}};
    labs: key -> [{name, unit, points: [(iso date, value), ...]}] (oldest first)."""
    data = {
        "bands": bands,
        "labs": labs,
        "patients": [
            {
                "key": p["key"],
                "risk": p["risk"],
                "band": p["band"],
                "reasons": [{"text": r["text"], "c": r["contribution"]} for r in p["reasons"]],
                "factors": [
                    {"label": feature_words(f, units).label, "c": v}
                    for f, v in sorted((p.get("contributions") or {}).items(), key=lambda t: -abs(t[1]))[:8]
                ],
            }
            for p in patients
        ],
    }
    blob = json.dumps(data).replace("</", "<\\/")  # inert inside the script element
    heads = "".join(
        f'<th data-sort="{k}" data-label="{lbl}">{lbl}</th>'
        for k, lbl in (("key", "Patient (pseudonym)"), ("risk", "Risk"), ("band", "Band"), ("reasons", "Top factors"))
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(subtitle)}</p>"
        f"<table><thead><tr>{heads}</tr></thead><tbody id='rows'></tbody></table><div id='panel'></div>"
        f"<script type='application/json' id='data'>{blob}</script><script>{JS}</script></body></html>"
    )


LAB_PAGE = tuple(LAB_NAMES)  # labs shown in the panel (the canonical names of schemas/vocab/units.yaml)
