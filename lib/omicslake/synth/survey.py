"""A REDCap-style longitudinal study for a subset of the generated patients.

Project ``omicslake_study`` (folder ``redcap/omicslake_study/`` of the generator's output): its
18-column data dictionary, one records export (raw codes) and the linkage file (record id ->
the generated patient's id). Events ``baseline_arm_1`` and ``followup_arm_1``; instruments
``enrolment`` (identifiers: name, phone, date of birth; a yes/no with a dependent integer shown
only by branching logic; a checkbox; a free-text note), ``wellbeing`` (two Likert scales, both
events) and ``visit`` (repeating, 1-3 instances at follow-up). Every participant belongs to one of
three sites, exported as REDCap's data access group (``redcap_data_access_group`` on each of the
record's rows); the manifest holds each site's participants, follow-ups and missing answers.

The scales: ``mood`` (6 items 1-5, mood_3 and mood_5 reverse keyed) and ``anxiety`` (5 items,
anx_2 reverse keyed), each driven by a latent trait (correlation between the traits 0.4;
follow-up trait = 0.7 x baseline + noise). Items are rounded, clipped normal responses, so the
planted reliability is the population Cronbach's alpha of the keyed items, worked out on
200,000 draws of the same model (its own random stream) and written to the manifest with the
loadings, the retest correlation and the missingness. Item answers are missing at random
(3 %), 15 % of participants have no follow-up.

Randomness: ``numpy.random.default_rng([seed, STREAM])``, a stream of its own, so adding the
survey changes no other generated file; the sites come from a sub-stream (``[seed, STREAM, 2]``), so
they change no answer either.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

STREAM = 18_0001  # the survey's own random stream (issue 18)
PROJECT = "omicslake_study"
EVENTS = ("baseline_arm_1", "followup_arm_1")
LIKERT = "1, Never | 2, Rarely | 3, Sometimes | 4, Often | 5, Always"
SCALES: dict[str, dict[str, Any]] = {
    "mood": {
        "items": [f"mood_{i}" for i in range(1, 7)],
        "loadings": [0.9, 0.8, 0.85, 0.7, 0.75, 0.8],
        "reverse": ["mood_3", "mood_5"],
    },
    "anxiety": {
        "items": [f"anx_{i}" for i in range(1, 6)],
        "loadings": [0.8, 0.7, 0.75, 0.85, 0.6],
        "reverse": ["anx_2"],
    },
}
NOISE_SD = 0.8
TRAIT_CORRELATION = 0.4
RETEST = 0.7
MISSING_ITEM = 0.03
DROPOUT = 0.15
# data access groups (REDCap's unique group names) and the share of participants each enrols
SITES = {"north_clinic": 0.5, "city_hospital": 0.3, "rural_practice": 0.2}
_HEADER = (
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
)  # fmt: skip
NAMES = ("Ada", "Bo", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun")


def dictionary_rows() -> list[list[str]]:
    """The data dictionary's rows (without the header), 18 columns each."""

    def row(name: str, form: str, ftype: str, label: str, choices: str = "", validation: str = "", vmin: str = "",
            vmax: str = "", ident: str = "", logic: str = "", required: str = "") -> list[str]:  # fmt: skip
        return [
            name,
            form,
            "",
            ftype,
            label,
            choices,
            "",
            validation,
            vmin,
            vmax,
            ident,
            logic,
            required,
            "",
            "",
            "",
            "",
            "",
        ]

    rows = [
        row("record_id", "enrolment", "text", "Record ID"),
        row("name", "enrolment", "text", "Name", ident="y"),
        row("phone", "enrolment", "text", "Phone", validation="phone", ident="y"),
        row("dob", "enrolment", "text", "Date of birth", validation="date_ymd", ident="y"),
        row(
            "consent_date",
            "enrolment",
            "text",
            "Consent date",
            validation="date_ymd",
            vmin="2018-01-01",
            vmax="2021-12-31",
            required="y",
        ),
        row("smoker", "enrolment", "yesno", "Do you smoke?"),
        row(
            "cigs_per_day",
            "enrolment",
            "text",
            "Cigarettes per day",
            validation="integer",
            vmin="1",
            vmax="80",
            logic="[smoker] = '1'",
        ),
        row(
            "conditions",
            "enrolment",
            "checkbox",
            "Conditions",
            "1, Diabetes | 2, Hypertension | 3, Asthma | 4, None of these",
        ),
        row("comments", "enrolment", "notes", "Comments"),
    ]
    for scale in SCALES.values():
        for item in scale["items"]:
            rows.append(row(item, "wellbeing", "radio", f"Item {item}", LIKERT))
    rows += [
        row("visit_date", "visit", "text", "Visit date", validation="date_ymd"),
        row("sbp", "visit", "text", "Systolic blood pressure", validation="integer", vmin="60", vmax="250"),
    ]
    return rows


def _responses(theta: np.ndarray, scale: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Raw 1-5 answers (as delivered, reverse-keyed items reversed) to a scale's items."""
    lam = np.array(scale["loadings"])
    sign = np.array([-1.0 if i in scale["reverse"] else 1.0 for i in scale["items"]])
    z = theta[:, None] * lam * sign + rng.standard_normal((len(theta), len(lam))) * NOISE_SD
    return np.clip(np.round(3 + z), 1, 5)


def _alpha(x: np.ndarray) -> float:
    c = np.cov(x, rowvar=False)
    k = x.shape[1]
    return float(k / (k - 1) * (1 - np.trace(c) / c.sum()))


def planted_alpha(scale: dict[str, Any], seed: int, draws: int = 200_000) -> float:
    """The population alpha of a scale's keyed items under the generating model (Monte Carlo)."""
    rng = np.random.default_rng([seed, STREAM, 1])
    x = _responses(rng.standard_normal(draws), scale, rng)
    for i, item in enumerate(scale["items"]):
        if item in scale["reverse"]:
            x[:, i] = 6 - x[:, i]
    return round(_alpha(x), 4)


def generate(patient_ids: list[str], seed: int, out: Path) -> dict[str, Any]:
    """Write the project for these patients under ``out/redcap/omicslake_study`` and return its
    manifest section (files, counts, the planted truth)."""
    rng = np.random.default_rng([seed, STREAM])
    folder = out / "redcap" / PROJECT
    folder.mkdir(parents=True, exist_ok=True)
    n = len(patient_ids)
    dict_rows = dictionary_rows()
    fields = [r[0] for r in dict_rows]
    columns = [
        "record_id",
        "redcap_event_name",
        "redcap_repeat_instrument",
        "redcap_repeat_instance",
        "redcap_data_access_group",
    ]
    for r in dict_rows[1:]:
        if r[3] == "checkbox":
            columns += [f"{r[0]}___{c.split(',')[0].strip()}" for c in r[5].split("|")]
        else:
            columns.append(r[0])
        if r[0] == "comments":
            columns.append("enrolment_complete")
        if r[0] == SCALES["anxiety"]["items"][-1]:
            columns.append("wellbeing_complete")
    columns.append("visit_complete")
    cov = np.array([[1, TRAIT_CORRELATION], [TRAIT_CORRELATION, 1]])
    base = rng.multivariate_normal([0, 0], cov, size=n)
    follow = RETEST * base + np.sqrt(1 - RETEST**2) * rng.standard_normal((n, 2))
    answers = {}
    for e, traits in enumerate((base, follow)):
        answers[e] = {name: _responses(traits[:, j], s, rng) for j, (name, s) in enumerate(SCALES.items())}
    stayed = rng.random(n) >= DROPOUT
    smoker = rng.random(n) < 0.25
    site_rng = np.random.default_rng([seed, STREAM, 2])
    site_of = [list(SITES)[k] for k in site_rng.choice(len(SITES), size=n, p=list(SITES.values()))]
    per_site: dict[str, dict[str, Any]] = {
        s: {"participants": 0, "followed_up": 0, "missing_items": dict.fromkeys(EVENTS, 0)} for s in SITES
    }
    missing_items = 0
    records = []
    ids = [f"S{i + 1:04d}" for i in range(n)]
    for i, rid in enumerate(ids):
        site = site_of[i]
        per_site[site]["participants"] += 1
        per_site[site]["followed_up"] += int(stayed[i])
        base_row: dict[str, str] = {"record_id": rid, "redcap_event_name": EVENTS[0], "redcap_data_access_group": site}
        born = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 25_000)))
        base_row.update(
            name=f"{NAMES[i % len(NAMES)]} {rid}",
            phone=f"(555) {rng.integers(200, 999)}-{rng.integers(1000, 9999)}",
            dob=born.isoformat(),
            consent_date=(dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))).isoformat(),
            smoker="1" if smoker[i] else "0",
            cigs_per_day=str(int(rng.integers(1, 30))) if smoker[i] else "",
            comments=f"Met {NAMES[(i + 3) % len(NAMES)]} at the clinic" if rng.random() < 0.3 else "",
            enrolment_complete="2",
        )
        ticked = rng.random(3) < (0.2, 0.35, 0.1)
        for c in range(3):
            base_row[f"conditions___{c + 1}"] = "1" if ticked[c] else "0"
        base_row["conditions___4"] = "0" if ticked.any() else "1"
        for e in (0, 1):
            if e == 1 and not stayed[i]:
                continue
            row = (
                base_row
                if e == 0
                else {"record_id": rid, "redcap_event_name": EVENTS[1], "redcap_data_access_group": site}
            )
            for name, s in SCALES.items():
                for j, item in enumerate(s["items"]):
                    if rng.random() < MISSING_ITEM:
                        missing_items += 1
                        per_site[site]["missing_items"][EVENTS[e]] += 1
                        row[item] = ""
                    else:
                        row[item] = str(int(answers[e][name][i, j]))
            row["wellbeing_complete"] = "2"
            records.append(row)
            if e == 1:
                for k in range(int(rng.integers(1, 4))):
                    records.append(
                        {
                            "record_id": rid,
                            "redcap_event_name": EVENTS[1],
                            "redcap_repeat_instrument": "visit",
                            "redcap_repeat_instance": str(k + 1),
                            "redcap_data_access_group": site,
                            "visit_date": (
                                dt.date(2020, 1, 1) + dt.timedelta(days=30 * k + int(rng.integers(0, 20)))
                            ).isoformat(),
                            "sbp": str(int(np.clip(rng.normal(128, 15), 80, 220))),
                            "visit_complete": "2",
                        }
                    )
    with (folder / "dictionary.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_HEADER)
        w.writerows(dict_rows)
    with (folder / "records.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in records:
            w.writerow([r.get(c, "") for c in columns])
    with (folder / "linkage.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["record_id", "patient_id"])
        w.writerows(zip(ids, patient_ids, strict=True))
    return {
        "project": PROJECT,
        "folder": f"redcap/{PROJECT}",
        "fields": fields,
        "participants": n,
        "followed_up": int(stayed.sum()),
        "smokers": int(smoker.sum()),
        "records_rows": len(records),
        "missing_items": missing_items,
        "identifier_fields": ["name", "phone", "dob"],
        # per data access group (redcap_data_access_group): participants, those followed up, and the
        # scale answers left empty at each event (counted as they were blanked)
        "sites": per_site,
        "truth": {
            "scales": {
                name: {
                    "items": s["items"],
                    "reverse": s["reverse"],
                    "loadings": s["loadings"],
                    "noise_sd": NOISE_SD,
                    "alpha": planted_alpha(s, seed),
                }
                for name, s in SCALES.items()
            },
            "trait_correlation": TRAIT_CORRELATION,
            "retest_trait_correlation": RETEST,
            "missing_item_rate": MISSING_ITEM,
            "dropout": DROPOUT,
        },
    }
