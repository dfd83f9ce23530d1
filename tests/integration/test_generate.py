"""The synthetic cohort generator: determinism, formats, messy counts and the planted signal.

Every check reads the files the way an outsider would (csv, json, bcftools), not through the
generator's own code.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession

from conftest import MESSY_PATIENTS as PATIENTS
from conftest import MESSY_SAMPLES as SAMPLES
from conftest import MESSY_VARIANTS as VARIANTS
from conftest import generate_cli as _generate
from conftest import require_tool

SYNTHEA_HEADERS = {
    "patients": "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,MIDDLE,LAST,SUFFIX,MAIDEN,MARITAL,RACE,"
    "ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,FIPS,ZIP,LAT,LON,HEALTHCARE_EXPENSES,"
    "HEALTHCARE_COVERAGE,INCOME",
    "encounters": "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,"
    "BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION",
    "conditions": "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION",
    "observations": "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
    "medications": "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,DISPENSES,"
    "TOTALCOST,REASONCODE,REASONDESCRIPTION",
    "procedures": "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION,BASE_COST,REASONCODE,REASONDESCRIPTION",
}
KNOWN_CONDITION_CODES = {
    "44054006",
    "59621000",
    "88805009",
    "185086009",
    "433144002",
    "22298006",
    "254637007",
    "26929004",
    "10509002",
    "444814009",
    "15777000",
}


def _digests(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "manifest.json":
                m = json.loads(data)
                m.pop("seconds")
                data = json.dumps(m, sort_keys=True).encode()
            out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def test_same_seed_same_files(messy: tuple[Path, dict[str, Any]], tmp_path: Path, spark: SparkSession) -> None:
    out, _ = messy
    again = _generate(
        tmp_path,
        tmp_path / "again",
        11,
        "--patients",
        str(PATIENTS),
        "--samples",
        str(SAMPLES),
        "--variants",
        str(VARIANTS),
        "--messy",
    )
    assert again["parameters"]["seed"] == 11
    first, second = _digests(out), _digests(tmp_path / "again")
    assert len(first) >= 25  # CSV, NDJSON parts, VCF, manifest, truth
    assert first == second


def test_other_seed_other_people(messy: tuple[Path, dict[str, Any]], tmp_path: Path, spark: SparkSession) -> None:
    out, _ = messy
    _generate(tmp_path, tmp_path / "other", 12, "--patients", "50", "--samples", "0")
    a = (out / "synthea/batch_001/patients.csv").read_text().splitlines()[1].split(",")[0]
    b = (tmp_path / "other/synthea/batch_001/patients.csv").read_text().splitlines()[1].split(",")[0]
    assert a != b


def test_headers_equal_synthea(messy: tuple[Path, dict[str, Any]]) -> None:
    out, _ = messy
    for table, header in SYNTHEA_HEADERS.items():
        with (out / "synthea/batch_001" / f"{table}.csv").open() as f:
            assert f.readline().rstrip("\n") == header, table
    drift = (out / "synthea/batch_002/observations.csv").open().readline().rstrip("\n")
    assert drift == SYNTHEA_HEADERS["observations"] + ",SOURCE_SYSTEM"


def test_vcf_accepted_by_bcftools(messy: tuple[Path, dict[str, Any]]) -> None:
    out, m = messy
    bcftools = require_tool("bcftools")
    vcf = out / "vcf/cohort.vcf.bgz"
    samples = subprocess.run(
        [bcftools, "query", "-l", str(vcf)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(samples) == SAMPLES == m["genome"]["samples"]
    body = subprocess.run(
        [bcftools, "view", "-H", str(vcf)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(body) == VARIANTS
    multi = sum(1 for line in body if "," in line.split("\t")[4])
    assert multi == m["genome"]["multiallelic_sites"] > 0
    fields = body[0].split("\t")
    assert fields[8] == "GT:DP:GQ:AD"
    # AD sums to DP on every called genotype of the first rows.
    for line in body[:50]:
        for call in line.split("\t")[9:]:
            gt, dp, gq, ad = call.split(":")
            if gt != "./.":
                assert sum(int(x) for x in ad.split(",")) == int(dp)
    missing = sum(call.startswith("./.") for line in body for call in line.split("\t")[9:])
    assert 0.005 < missing / (VARIANTS * SAMPLES) < 0.02
    # The bgzip container itself (BGZF, with its index).
    assert vcf.read_bytes()[12:14] == b"BC"
    assert (out / "vcf/cohort.vcf.bgz.tbi").exists()


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def _iso(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def test_messy_counts_match_files(messy: tuple[Path, dict[str, Any]]) -> None:
    out, m = messy
    counts = m["messy"]["counts"]
    b1 = out / "synthea/batch_001"
    patients = {r[0]: r for r in _read_csv(b1 / "patients.csv")}
    assert len(patients) == PATIENTS

    obs_lines = (b1 / "observations.csv").read_text().splitlines()[1:]
    obs = _read_csv(b1 / "observations.csv")
    assert sum(len(r) != 9 for r in obs) == counts["observations_wrong_column_count"] > 0
    assert sum(_iso(r[0]) is None for r in obs) == counts["observations_unparseable_date"] > 0
    assert sum(r[7] == "mmol/L" for r in obs) == counts["observations_glucose_mmol_per_l"] > 0
    assert sum(r[7] == "[lb_av]" for r in obs) == counts["observations_weight_lb"] > 0
    assert len(obs_lines) - len(set(obs_lines)) == counts["observations_duplicate_rows"] > 0

    cond_lines = (b1 / "conditions.csv").read_text().splitlines()[1:]
    cond = _read_csv(b1 / "conditions.csv")
    assert len(cond_lines) - len(set(cond_lines)) == counts["conditions_duplicate_rows"] > 0
    assert sum(r[5] not in KNOWN_CONDITION_CODES for r in cond) == counts["conditions_unknown_code"] > 0
    assert sum(r[0] < patients[r[2]][1] for r in cond) == counts["conditions_before_birth"]

    enc = _read_csv(b1 / "encounters.csv")
    assert sum(len(r) != 15 for r in enc) == counts["encounters_wrong_column_count"] > 0
    after_death = sum(1 for r in enc if patients[r[3]][2] and r[1][:10] > patients[r[3]][2])
    assert after_death == counts["encounters_after_death"] > 0

    b2 = out / "synthea/batch_002"
    first = {r[0]: r for r in enc}
    corrections = _read_csv(b2 / "encounters.csv")
    assert len(corrections) == counts["encounters_late_corrections"] > 0
    assert all(r[0] in first and r != first[r[0]] and r[3] == first[r[0]][3] for r in corrections)
    drift = _read_csv(b2 / "observations.csv")
    assert len(drift) == counts["observations_schema_drift_rows"] > 0 and all(len(r) == 10 for r in drift)

    for name, info in m["files"].items():
        if name.endswith(".csv"):
            assert info["rows"] == len((out / name).read_text().splitlines()) - 1, name


def test_fhir_resources_parse_with_needed_fields(messy: tuple[Path, dict[str, Any]]) -> None:
    out, m = messy
    needed = {
        "Patient": ["id", "birthDate", "gender", "identifier", "name", "address"],
        "Encounter": ["id", "subject", "period", "class", "type"],
        "Condition": ["id", "subject", "encounter", "code", "onsetDateTime"],
        "Observation": ["id", "subject", "encounter", "code", "valueQuantity", "effectiveDateTime"],
        "MedicationRequest": ["id", "subject", "medicationCodeableConcept", "authoredOn"],
        "Procedure": ["id", "subject", "code", "performedPeriod"],
    }
    broken: Counter[str] = Counter()
    seen: dict[str, set[str]] = defaultdict(set)
    for resource, fields in needed.items():
        files = sorted((out / "fhir").glob(f"{resource}.*.ndjson"))
        assert files, resource
        n = 0
        for path in files:
            for line in path.read_text().splitlines():
                n += 1
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    broken[resource] += 1
                    continue
                assert r["resourceType"] == resource
                for f in fields:
                    assert f in r, (resource, f)
                seen[resource].add(r["id"])
        assert n == m["files"][f"fhir/{resource}"]["rows"]
    assert broken["Observation"] == m["messy"]["counts"]["fhir_observation_broken_json"] > 0
    assert broken["Condition"] == m["messy"]["counts"]["fhir_condition_broken_json"]
    assert set(broken) <= {"Observation", "Condition"}
    assert len(seen["Patient"]) == PATIENTS
    patient = json.loads((out / "fhir/Patient.000.ndjson").read_text().splitlines()[0])
    codes = {i.get("type", {}).get("coding", [{}])[0].get("code") for i in patient["identifier"]}
    assert {"MR", "SS", "DL", "PPN"} <= codes
    obs = json.loads((out / "fhir/Observation.000.ndjson").read_text().splitlines()[0])
    assert obs["code"]["coding"][0]["system"] == "http://loinc.org"
    assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"


def test_manifest_lists_causal_variants_present_in_vcf(messy: tuple[Path, dict[str, Any]]) -> None:
    out, m = messy
    bcftools = require_tool("bcftools")
    causal = m["genome"]["causal_variants"]
    assert len(causal) == 5
    text = subprocess.run(
        [bcftools, "view", "-H", str(out / "vcf/cohort.vcf.bgz")], capture_output=True, text=True, check=True
    ).stdout
    sites = {(f[0], int(f[1]), f[3], f[4]) for f in (line.split("\t")[:5] for line in text.splitlines())}
    for c in causal:
        assert (c["contig"], c["position"], c["ref"], c["alt"]) in sites
        assert c["beta_log_odds"] != 0


def test_planted_signal_recovered_from_files(spark: SparkSession, tmp_path: Path) -> None:
    """Logistic regression on features computed from the CSV files beats the manifest's promise."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "clean"
    m = _generate(tmp_path, out, 5, "--patients", "4000", "--samples", "0")
    b1 = out / "synthea/batch_001"
    patients = {r[0]: r for r in _read_csv(b1 / "patients.csv")}
    index: dict[str, tuple[dt.date, str]] = {}
    for r in _read_csv(b1 / "encounters.csv"):
        start = dt.date.fromisoformat(r[1][:10])
        if r[8] == "162673000" and start.year == 2019:
            if r[3] not in index or start < index[r[3]][0]:
                index[r[3]] = (start, r[0])
    a1c: dict[str, list[tuple[dt.date, float]]] = defaultdict(list)
    bmi: dict[str, float] = {}
    for r in _read_csv(b1 / "observations.csv"):
        pid, date = r[1], dt.date.fromisoformat(r[0][:10])
        if pid not in index or date > index[pid][0]:
            continue
        if r[4] == "4548-4":
            a1c[pid].append((date, float(r[6])))
        if r[4] == "39156-5" and r[2] == index[pid][1]:
            bmi[pid] = float(r[6])
    t2d: dict[str, dt.date] = {}
    for r in _read_csv(b1 / "conditions.csv"):
        if r[5] == "44054006":
            d = dt.date.fromisoformat(r[0])
            t2d[r[2]] = min(d, t2d.get(r[2], d))
    rows, labels = [], []
    for pid, (idx_date, _) in index.items():
        if pid in t2d and t2d[pid] <= idx_date:
            continue  # prevalent: not at risk
        series = sorted(a1c[pid])
        last = series[-1][1]
        if len(series) >= 2:
            x = np.array([(d - idx_date).days / 365.25 for d, _ in series])
            slope = float(np.polyfit(x, [v for _, v in series], 1)[0])
        else:
            slope = 0.0
        birth = dt.date.fromisoformat(patients[pid][1])
        race = patients[pid][13]
        rows.append([(idx_date - birth).days / 365.25, bmi[pid], last, slope, race == "black", race == "asian"])
        labels.append(int(pid in t2d and 0 < (t2d[pid] - idx_date).days <= 365))
    x, y = np.array(rows, dtype=float), np.array(labels)
    assert len(y) > 3500 and 0.03 < y.mean() < 0.2
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.5
    model = LogisticRegression(max_iter=2000).fit(x[~test], y[~test])
    auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
    promised = m["outcomes"]["t2d_incident_365d"]["min_auroc_with_planted_features"]
    assert auc >= promised, (auc, promised)
    assert auc <= m["outcomes"]["t2d_incident_365d"]["oracle_auroc"] + 0.05
    # The labels found in the files agree with the planted truth for the listed examples.
    labelled = dict(zip([pid for pid in index if not (pid in t2d and t2d[pid] <= index[pid][0])], labels, strict=False))
    for pid in m["outcomes"]["t2d_incident_365d"]["example_cases"]:
        assert labelled[pid] == 1
    for pid in m["outcomes"]["t2d_incident_365d"]["example_controls"]:
        assert labelled[pid] == 0
