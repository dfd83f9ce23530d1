"""EHR bronze -> silver on the generator's messy cohort: reconciliation against the manifest,
late corrections through MERGE, PHI never past bronze, reruns and a SIGKILL mid-run."""

from __future__ import annotations

import csv
import hmac
import json
import os
import shutil
from collections import Counter
from hashlib import sha256
from pathlib import Path
from typing import Any

import phi_scan
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conftest import EHR_SILVER as SILVER
from omicslake.config import Config
from omicslake.errors import SecretError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

BAD_DATE = "31/02/2019 25:61"


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def test_bronze_keeps_every_line_and_rescues_what_fits_nowhere(spark: SparkSession, ehr_lake: dict[str, Any]) -> None:
    cfg, m = ehr_lake["cfg"], ehr_lake["manifest"]
    lake = Lake(spark, cfg)
    for key, info in m["files"].items():
        if key.startswith("synthea/"):
            table = "bronze.synthea_" + Path(key).stem
            n = lake.read(table).where(F.col("_source_file").endswith(key)).count()
        else:
            table = "bronze.fhir_" + key.split("/")[1].lower()
            n = lake.read(table).count()
        assert n == info["rows"], (key, n, info["rows"])
    obs = lake.read("bronze.synthea_observations")
    malformed = obs.where(F.col("_rescued")["_malformed_line"].isNotNull())
    assert malformed.count() == m["messy"]["counts"]["observations_wrong_column_count"]
    # the line number is the line in the file
    row = malformed.orderBy("_line").first()
    text = Path(row._source_file).read_text().splitlines()[row._line - 1]
    assert text == row._rescued["_malformed_line"] and text.endswith(",UNEXPECTED")
    drift = obs.where(F.col("_rescued")["SOURCE_SYSTEM"].isNotNull())
    assert (
        drift.count() == m["messy"]["counts"]["observations_schema_drift_rows"]
        and drift.where("_batch_id = 'batch_002'").count() == drift.count()
    )
    broken = lake.read("bronze.fhir_observation").where("resource_type IS NULL")
    assert broken.count() == m["messy"]["counts"]["fhir_observation_broken_json"]
    assert ehr_lake["ingest2"].metrics["files_known"] >= 6 and ehr_lake["ingest2"].metrics["files_new"] == 2


def test_reconciliation_rows_in_equal_out_plus_quarantined_plus_duplicates(
    spark: SparkSession, ehr_lake: dict[str, Any]
) -> None:
    cfg, m, landing = ehr_lake["cfg"], ehr_lake["manifest"], ehr_lake["landing"]
    metrics = ehr_lake["conform2"].metrics
    lake = Lake(spark, cfg)
    files = m["files"]
    sources = {
        "person": ["patients"],
        "visit_occurrence": ["encounters"],
        "condition_occurrence": ["conditions"],
        "measurement": ["observations"],
        "drug_exposure": ["medications"],
        "procedure_occurrence": ["procedures"],
    }
    for table, stems in sources.items():
        rows_in = sum(v["rows"] for k, v in files.items() if k.startswith("synthea/") and Path(k).stem in stems)
        assert metrics[f"{table}_in"] == rows_in, table
        assert rows_in == metrics[f"{table}_out"] + metrics[f"{table}_quarantined"] + metrics[f"{table}_duplicates"], (
            table
        )
        assert lake.read(f"silver.{table}").count() == metrics[f"{table}_out"], table
        q = lake.read(f"quarantine.{table}").count() if lake.exists(f"quarantine.{table}") else 0
        assert q == metrics[f"{table}_quarantined"], table
    c = m["messy"]["counts"]
    assert metrics["visit_occurrence_duplicates"] == c["encounters_late_corrections"]
    assert metrics["condition_occurrence_duplicates"] == c["conditions_duplicate_rows"]
    rules = Counter((r.rule) for r in lake.read("quarantine.visit_occurrence").collect())
    assert rules == Counter(
        {"well_formed": c["encounters_wrong_column_count"], "not_after_death": c["encounters_after_death"]}
    )
    # Observations: derive the expected outcome of every line from the CSV itself.
    obs_rows = _csv_rows(landing / "synthea" / "batch_001" / "observations.csv")
    keys = Counter((r[1], r[2], r[4], r[0]) for r in obs_rows if len(r) == 9)
    bad_date_keys = {k for k in keys if k[3] == BAD_DATE}
    q_rules = Counter(r.rule for r in lake.read("quarantine.measurement").collect())
    assert q_rules["well_formed"] == c["observations_wrong_column_count"]
    assert q_rules["parseable"] == len(bad_date_keys)
    dupes_b1 = sum(n - 1 for n in keys.values())
    assert metrics["measurement_duplicates"] == dupes_b1  # batch 2's heart rates are new keys
    dq = lake.read("ops.dq_results").where(F.col("run_id") == ehr_lake["conform2"].run_id)
    got = {(r.table_name, r.expectation): r.rows_failed for r in dq.collect()}
    assert got[("silver.measurement", "parseable")] == len(bad_date_keys)
    assert got[("silver.condition_occurrence", "concept_mapped")] == c["conditions_unknown_code"] - sum(
        1 for r in _csv_rows(landing / "synthea" / "batch_001" / "conditions.csv") if r[5] == "999999999"
    ) + len(
        {
            (r[2], r[3], r[5], r[0])
            for r in _csv_rows(landing / "synthea" / "batch_001" / "conditions.csv")
            if r[5] == "999999999"
        }
    )


def test_units_are_canonical_and_conversions_exact(spark: SparkSession, ehr_lake: dict[str, Any]) -> None:
    lake = Lake(spark, ehr_lake["cfg"])
    meas = lake.read("silver.measurement")
    units = {
        (r.measurement_name, r.unit_source_value)
        for r in meas.where("measurement_name IN ('glucose','weight','hba1c','height','bmi')")
        .select("measurement_name", "unit_source_value")
        .distinct()
        .collect()
    }
    assert units == {("glucose", "mg/dL"), ("weight", "kg"), ("hba1c", "%"), ("height", "cm"), ("bmi", "kg/m2")}
    lb = meas.where("unit_as_delivered = '[lb_av]'").select("value_source_value", "value_as_number").collect()
    mmol = meas.where("unit_as_delivered = 'mmol/L'").select("value_source_value", "value_as_number").collect()
    assert lb and mmol
    assert all(abs(float(r.value_source_value) * 0.45359237 - r.value_as_number) < 1e-3 for r in lb)
    assert all(abs(float(r.value_source_value) * 18.016 - r.value_as_number) < 1e-3 for r in mmol)
    # after conversion the swapped units look like the rest: glucose in a plausible mg/dL range
    g = meas.where("measurement_name = 'glucose'").agg(F.min("value_as_number"), F.max("value_as_number")).first()
    assert 40 < g[0] and g[1] < 600
    assert (
        meas.where("measurement_concept_id = 3004410").count() == meas.where("measurement_name = 'hba1c'").count() > 0
    )  # LOINC 4548-4


def test_late_correction_replaces_the_row_and_history_stays(spark: SparkSession, ehr_lake: dict[str, Any]) -> None:
    cfg, landing, key = ehr_lake["cfg"], ehr_lake["landing"], os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    corrected = _csv_rows(landing / "synthea" / "batch_002" / "encounters.csv")[0]
    original = next(r for r in _csv_rows(landing / "synthea" / "batch_001" / "encounters.csv") if r[0] == corrected[0])
    assert original[2] != corrected[2]
    visit_key = hmac.new(key, "\x1f".join(["visit", corrected[0]]).encode(), sha256).hexdigest()
    lake = Lake(spark, cfg)
    now = lake.read("silver.visit_occurrence").where(F.col("visit_key") == visit_key).collect()
    assert (
        len(now) == 1
        and now[0].visit_end_datetime.strftime("%Y-%m-%dT%H:%M:%SZ") == corrected[2]
        and now[0]._batch_id == "batch_002"
    )
    v1 = ehr_lake["versions1"]["visit_occurrence"]
    path = str(lake.path("silver.visit_occurrence"))
    then = (
        spark.read.format("delta").option("versionAsOf", v1).load(path).where(F.col("visit_key") == visit_key).collect()
    )
    assert then[0].visit_end_datetime.strftime("%Y-%m-%dT%H:%M:%SZ") == original[2]
    assert lake.version("silver.visit_occurrence") == v1 + 1
    # only the corrected rows were rewritten
    hist = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").where(F.col("version") == v1 + 1).first()
    assert (
        int(hist.operationMetrics["numTargetRowsUpdated"])
        == ehr_lake["manifest"]["messy"]["counts"]["encounters_late_corrections"]
    )


def test_no_direct_identifier_leaves_bronze(spark: SparkSession, ehr_lake: dict[str, Any], gold_lake: Config) -> None:
    """Every text value of every silver, gold and quarantine table (gold built from this lake), cut into
    words, holds none of bronze's direct identifiers, alone or as a 'first last' pair (tests/integration/phi_scan.py)."""
    lake = Lake(spark, gold_lake)
    p = lake.read("bronze.synthea_patients")
    ids = phi_scan.identifiers(
        phi_scan.synthea_identifiers(p, lake.read("bronze.synthea_encounters"))
        + phi_scan.fhir_identifiers(lake.read("bronze.fhir_patient"))
    ).cache()
    n_patients = p.where("Id IS NOT NULL").select("Id").distinct().count()
    n_encounters = lake.read("bronze.synthea_encounters").where("Id IS NOT NULL").select("Id").distinct().count()
    n_fhir = lake.read("bronze.fhir_patient").where("resource IS NOT NULL").count()
    counts = phi_scan.kinds(ids)
    print("PHI scan looks for:", counts)
    # every patient's SSN, licence, passport, address, names and name pairs (FHIR adds MRNs and phones)
    assert n_patients >= 1400 and n_fhir >= 100
    assert all(counts[k] >= 0.95 * n_patients for k in ("ssn", "licence", "passport", "address")), counts
    assert counts["phone"] >= 0.95 * n_fhir and counts["identifier"] >= 4 * 0.95 * n_fhir, counts
    assert counts["name pair"] >= 1.9 * n_patients and counts["name"] >= 2.5 * n_patients, counts
    assert counts["source id"] >= n_patients + n_encounters, counts
    tables = [n for n in lake.names() if n.split(".")[0] in ("silver", "gold", "quarantine")]
    assert {f"silver.{t}" for t in SILVER} <= set(tables)
    assert {
        "gold.cohort_t2d_incident",
        "gold.features_t2d_incident",
        "gold.table1_t2d_incident",
        "gold.cohort_readmission_30d",
    } <= set(tables)
    assert {"quarantine.measurement", "quarantine.visit_occurrence"} <= set(tables)
    assert phi_scan.scan_lake(lake, ids) == {}
    # The scan finds an identifier where there is one: an SSN inside other text, a 'First Last' pair and a
    # 'Last, First' pair of a bronze patient, in three silver rows (a JSON copy too, as in quarantine.row_json).
    who = p.where("FIRST IS NOT NULL AND LAST IS NOT NULL AND SSN IS NOT NULL").orderBy("Id").first()
    leak = (
        lake.read("silver.person")
        .limit(3)
        .select(
            F.lit(f"ssn:{who.SSN};").alias("state"),
            F.lit(f"Seen by Dr. {who.FIRST.upper()} {who.LAST}, clinic").alias("race_source_value"),
            F.lit(f"{who.LAST}, {who.FIRST}").alias("ethnicity_source_value"),
            F.to_json(F.struct(F.lit(f"note\x1f{who.FIRST} {who.LAST}\n").alias("x"))).alias("row_json"),
        )
    )
    hits = phi_scan.scan(leak, ids)
    # (the SSN is found twice: as Synthea's SSN and as one of the FHIR Patient's identifiers)
    assert hits == {
        ("state", "ssn"): 3,
        ("state", "identifier"): 3,
        ("race_source_value", "name pair"): 3,
        ("race_source_value", "name"): 6,
        ("ethnicity_source_value", "name pair"): 3,
        ("ethnicity_source_value", "name"): 6,
        ("row_json", "name pair"): 3,
        ("row_json", "name"): 6,
    }, hits
    ids.unpersist()
    silver_rows = lake.read("silver.person").count() + lake.read("silver.measurement").count()
    assert silver_rows > 1000


def test_pseudonyms_are_hmac_of_the_source_id_and_change_with_the_key(
    spark: SparkSession, ehr_lake: dict[str, Any]
) -> None:
    from omicslake.ehr.deid import pseudonym

    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    lake = Lake(spark, ehr_lake["cfg"])
    src = [r.Id for r in lake.read("bronze.synthea_patients").select("Id").limit(5).collect()]
    expected = {hmac.new(key, f"person\x1f{s}".encode(), sha256).hexdigest() for s in src}
    silver_keys = {r.person_key for r in lake.read("silver.person").collect()}
    assert expected <= silver_keys
    df = spark.createDataFrame([(s,) for s in src], "id string")
    other = {r[0] for r in df.select(pseudonym(b"another-key-0123456789abcdef", "person", F.col("id"))).collect()}
    assert other.isdisjoint(silver_keys)
    # stable across runs: run 1's person keys are run 2's
    v1 = ehr_lake["versions1"]["person"]
    first = {
        r.person_key
        for r in spark.read.format("delta").option("versionAsOf", v1).load(str(lake.path("silver.person"))).collect()
    }
    assert first == silver_keys


def test_rerun_adds_nothing(spark: SparkSession, ehr_lake: dict[str, Any]) -> None:
    cfg = ehr_lake["cfg"]
    lake = Lake(spark, cfg)
    watched = [n for n, _, _ in lake.tables() if not n.startswith("ops.")]
    before = {n: lake.version(n) for n in watched}
    execute(spark, cfg, "ingest_ehr", run_id="r3")
    execute(spark, cfg, "conform_ehr", run_id="r3")
    assert {n: lake.version(n) for n in watched} == before


def test_missing_key_is_a_clear_error(spark: SparkSession, ehr_lake: dict[str, Any]) -> None:
    cfg = ehr_lake["cfg"].replace(**{"jobs.conform_ehr.key_env": "OMICSLAKE_NO_SUCH_KEY"})
    with pytest.raises(SecretError, match="set the environment variable OMICSLAKE_NO_SUCH_KEY"):
        execute(spark, cfg, "conform_ehr", run_id="nokey")


def test_external_fhir_bulk_export_conforms(spark: SparkSession, cfg: Config, external: Path) -> None:
    """smart-on-fhir's 10-patient bulk export (real Synthea FHIR R4, US Core) through bronze and
    silver: every line lands, every table reconciles, nothing is quarantined but what breaks a rule."""
    src = external / "fhir-bulk-r4"
    c = cfg.replace(
        **{"jobs.ingest_ehr.sources": ["fhir"], "jobs.ingest_ehr.fhir_dir": str(src), "jobs.conform_ehr.source": "fhir"}
    )
    ing = execute(spark, c, "ingest_ehr", run_id="f1")
    lines = {
        p.name.split(".")[0]: len(p.read_text().splitlines()) for p in src.glob("*.ndjson") if p.name != "log.ndjson"
    }
    assert (
        ing.metrics["files_new"] == len(lines)
        and ing.metrics["rows"] == sum(lines.values())
        and ing.metrics["rescued_rows"] == 0
    )
    conf = execute(spark, c, "conform_ehr", run_id="f1")
    m = conf.metrics
    lake = Lake(spark, c)
    expected_in = {
        "person": lines["Patient"],
        "visit_occurrence": lines["Encounter"],
        "condition_occurrence": lines["Condition"],
        "drug_exposure": lines["MedicationRequest"],
        "procedure_occurrence": lines["Procedure"],
    }
    for table, n in expected_in.items():
        assert m[f"{table}_in"] == n, table
        assert n == m[f"{table}_out"] + m[f"{table}_quarantined"] + m[f"{table}_duplicates"], table
        assert lake.read(f"silver.{table}").count() == m[f"{table}_out"], table
    assert m["person_out"] == lines["Patient"] and m["visit_occurrence_out"] > 0.95 * lines["Encounter"]
    print(
        "FHIR sample conform metrics:",
        {k: v for k, v in m.items() if k.endswith(("_in", "_out", "_quarantined", "_duplicates"))},
    )
    assert not lake.exists("silver.measurement")  # the sample has no Observation file
    # codes mapped where the Eunomia concept table knows them
    mapped = lake.read("silver.condition_occurrence").where("condition_concept_id <> 0").count()
    assert mapped > 0
    rules = (
        Counter(r.rule for r in lake.read("quarantine.visit_occurrence").collect())
        if lake.exists("quarantine.visit_occurrence")
        else Counter()
    )
    print("FHIR sample quarantine rules (visits):", dict(rules))
    assert sum(rules.values()) == m["visit_occurrence_quarantined"]
    # No direct identifier of the export's patients (resource ids, SSN, MRN, licence, passport, phone, names and
    # name pairs, street addresses) nor an encounter id reaches silver or quarantine.
    ids = phi_scan.identifiers(
        phi_scan.fhir_identifiers(lake.read("bronze.fhir_patient"), lake.read("bronze.fhir_encounter"))
    ).cache()
    counts = phi_scan.kinds(ids)
    print("PHI scan (FHIR sample) looks for:", counts)
    first = json.loads((src / "Patient.000.ndjson").read_text().splitlines()[0])
    given, family = first["name"][0]["given"][0], first["name"][0]["family"]
    ssn = next(i["value"] for i in first["identifier"] if i.get("system") == "http://hl7.org/fhir/sid/us-ssn")
    assert (
        counts["source id"] == lines["Patient"] + lines["Encounter"] and counts["identifier"] >= 3 * lines["Patient"]
    ), counts
    assert (
        counts["phone"] == lines["Patient"]
        and counts["name pair"] >= 2 * lines["Patient"]
        and counts["address"] >= lines["Patient"]
    ), counts
    assert phi_scan.scan_lake(lake, ids, ("silver", "quarantine")) == {}
    leak = (
        lake.read("silver.person")
        .limit(2)
        .select(F.lit(f"{given} {family}").alias("a"), F.lit(f"ssn={ssn}").alias("b"))
    )
    assert phi_scan.scan(leak, ids) == {("a", "name pair"): 2, ("a", "name"): 4, ("b", "identifier"): 2}
    ids.unpersist()


def test_external_omop_cdm_export_conforms(spark: SparkSession, cfg: Config, external: Path) -> None:
    """OHDSI Eunomia's Synthea-27-NJ OMOP CDM export (28 people) through bronze and silver: every
    line lands, every table reconciles, and the concepts we map from the source values are the
    ones the OMOP export itself carries (an independent mapping by OHDSI's ETL)."""
    src = external / "omop-eunomia-synthea27nj"
    c = cfg.replace(
        **{"jobs.ingest_ehr.sources": ["omop"], "jobs.ingest_ehr.omop_dir": str(src), "jobs.conform_ehr.source": "omop"}
    )
    ing = execute(spark, c, "ingest_ehr", run_id="o1")
    rows = {p.stem.lower(): [[""]] + _csv_rows(p) for p in src.glob("*.csv") if p.name != "CONCEPT.csv"}  # [0]: header
    assert ing.metrics["files_new"] == len(rows) and ing.metrics["rows"] == sum(len(r) - 1 for r in rows.values())
    assert ing.metrics["rescued_rows"] == 0
    conf = execute(spark, c, "conform_ehr", run_id="o1")
    m = conf.metrics
    lake = Lake(spark, c)
    expected_in = {
        "person": "person",
        "visit_occurrence": "visit_occurrence",
        "condition_occurrence": "condition_occurrence",
        "measurement": "measurement",
        "drug_exposure": "drug_exposure",
    }
    for table, omop_table in expected_in.items():
        assert m[f"{table}_in"] == len(rows[omop_table]) - 1, table
        assert m[f"{table}_in"] == m[f"{table}_out"] + m[f"{table}_quarantined"] + m[f"{table}_duplicates"], table
        assert lake.read(f"silver.{table}").count() == m[f"{table}_out"], table
    print(
        "OMOP sample conform metrics:",
        {k: v for k, v in m.items() if k.endswith(("_in", "_out", "_quarantined", "_duplicates"))},
    )
    assert m["person_out"] == len(rows["person"]) - 1 and m["death_out"] == len(rows["death"]) - 1
    assert (
        m["visit_occurrence_out"] > 0.95 * m["visit_occurrence_in"] and m["measurement_out"] > 0.9 * m["measurement_in"]
    )
    # person_key = HMAC of person_source_value; birth dates and death dates come through unchanged
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    pk = {r[0]: hmac.new(key, ("person\x1f" + r[11]).encode(), sha256).hexdigest() for r in rows["person"][1:]}
    silver_person = {r.person_key: r for r in lake.read("silver.person").collect()}
    by_id = {r[0]: r for r in rows["person"][1:]}
    for pid, key_hex in pk.items():
        assert str(silver_person[key_hex].birth_date) == by_id[pid][5][:10] or silver_person[key_hex].age_90_plus
    for d in rows["death"][1:]:
        assert str(silver_person[pk[d[0]]].death_date) == d[1]
    # our concept mapping (source value -> Eunomia CONCEPT) equals the export's own concept ids
    for table, src_col, cid_col, src_idx, cid_idx in [
        ("condition_occurrence", "condition_source_value", "condition_concept_id", 13, 2),
        ("drug_exposure", "drug_source_value", "drug_concept_id", 19, 2),
        ("measurement", "measurement_source_value", "measurement_concept_id", 16, 2),
    ]:
        theirs = {r[src_idx]: int(r[cid_idx]) for r in rows[table][1:] if r[cid_idx] not in ("", "0")}
        ours = {r[0]: r[1] for r in lake.read(f"silver.{table}").select(src_col, cid_col).distinct().collect() if r[1]}
        both = set(theirs) & set(ours)
        assert len(both) >= 0.8 * len(theirs), (table, len(both), len(theirs))
        assert all(ours[s] == theirs[s] for s in both), table
    # The source system's ids (person_source_value, visit_source_value) reach neither silver nor quarantine,
    # as whole values or inside text (tests/integration/phi_scan.py).
    source_ids = {r[11] for r in rows["person"][1:]} | {r[10] for r in rows["visit_occurrence"][1:] if r[10]}
    ids = phi_scan.identifiers(
        phi_scan.omop_identifiers(lake.read("bronze.omop_person"), lake.read("bronze.omop_visit_occurrence"))
    ).cache()
    assert phi_scan.kinds(ids) == {"source id": len(source_ids)}
    assert phi_scan.scan_lake(lake, ids, ("silver", "quarantine")) == {}
    planted = sorted(source_ids)[0]
    leak = lake.read("silver.person").limit(2).select(F.lit(f"src:{planted.upper()}").alias("a"))
    assert phi_scan.scan(leak, ids) == {("a", "source id"): 2}
    ids.unpersist()


def test_omop_exports_of_cdm_5_0_and_5_3_are_read_as_5_4(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    """A CDM 5.0 export (SynPUF: *_time columns, no measurement table) lands and conforms with every
    row reconciled; a CDM 5.3 export (Eunomia's VISIT_OCCURRENCE with its 5.3 column names) lands
    with the renamed columns under their 5.4 names, nothing rescued. The version is in the metrics."""
    v50 = external / "omop-synpuf-10p-cdm50"
    c = cfg.replace(
        **{"jobs.ingest_ehr.sources": ["omop"], "jobs.ingest_ehr.omop_dir": str(v50), "jobs.conform_ehr.source": "omop"}
    )
    ing = execute(spark, c, "ingest_ehr", run_id="v50")
    assert ing.status == "succeeded" and ing.metrics["omop_cdm_version"] == ["5.0"]
    conf = execute(spark, c, "conform_ehr", run_id="v50")
    m = conf.metrics
    lake = Lake(spark, c)
    for table in ("person", "visit_occurrence", "condition_occurrence", "drug_exposure"):
        lines = len(_csv_rows(v50 / f"{table}.csv"))
        assert m[f"{table}_in"] == lines, table
        assert lake.read(f"silver.{table}").count() == m[f"{table}_out"], table
        assert m[f"{table}_in"] == m[f"{table}_out"] + m[f"{table}_quarantined"] + m[f"{table}_duplicates"], table
    assert m["person_out"] == 10 and m["visit_occurrence_out"] > 0.9 * m["visit_occurrence_in"]
    # 5.3: the admitting/discharge columns under their 5.3 names
    v53 = tmp_path / "cdm53"
    v53.mkdir()
    src = external / "omop-eunomia-synthea27nj"
    shutil.copy(src / "PERSON.csv", v53 / "PERSON.csv")
    text = (src / "VISIT_OCCURRENCE.csv").read_text()
    head, body = text.split("\n", 1)
    cdm53 = {
        "admitted_from_concept_id": "admitting_source_concept_id",
        "admitted_from_source_value": "admitting_source_value",
        "discharged_to_concept_id": "discharge_to_concept_id",
        "discharged_to_source_value": "discharge_to_source_value",
    }
    head = ",".join(cdm53.get(h, h) for h in head.split(","))
    (v53 / "VISIT_OCCURRENCE.csv").write_text(head + "\n" + body)
    c53 = c.replace(**{"lake.root": str(tmp_path / "lake53"), "jobs.ingest_ehr.omop_dir": str(v53)})
    ing53 = execute(spark, c53, "ingest_ehr", run_id="v53")
    assert ing53.metrics["omop_cdm_version"] == ["5.3"] and ing53.metrics["rescued_rows"] == 0
    visits = _csv_rows(src / "VISIT_OCCURRENCE.csv")
    got = (
        Lake(spark, c53).read("bronze.omop_visit_occurrence").select("visit_occurrence_id", "admitted_from_concept_id")
    )
    assert {r[0]: r[1] for r in got.collect()} == {r[0]: r[12] or None for r in visits}


def test_build_cohort_labels_agree_with_the_planted_truth(
    spark: SparkSession, ehr_lake: dict[str, Any], gold_lake: Config
) -> None:
    """gold.cohort_* labels against the generator's truth file: the manifest's example cases and
    controls, and every patient whose index date is the generator's own."""
    cfg = gold_lake
    lake = Lake(spark, cfg)
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()

    def pk(pid: str) -> str:
        return hmac.new(key, ("person\x1f" + pid).encode(), sha256).hexdigest()

    with (ehr_lake["landing"] / "truth" / "patients.csv").open(newline="") as f:
        truth = {pk(r["patient_id"]): r for r in csv.DictReader(f)}
    t2d = {r.person_key: r for r in lake.read("gold.cohort_t2d_incident").collect()}
    out = ehr_lake["manifest"]["outcomes"]["t2d_incident_365d"]
    cases = [t2d[pk(p)] for p in out["example_cases"] if pk(p) in t2d]
    controls = [t2d[pk(p)] for p in out["example_controls"] if pk(p) in t2d]
    assert len(cases) >= 15 and len(controls) >= 15, (len(cases), len(controls))
    assert all(r.label == 1 for r in cases) and all(r.label == 0 for r in controls)
    same_index = [
        (r.label, truth[k]["t2d_incident"] == "true")
        for k, r in t2d.items()
        if str(r.index_date) == truth[k]["index_date"]
    ]
    agree = sum(int(lab == bool(t)) for lab, t in same_index)
    print(
        f"T2D cohort: {len(t2d)} persons, {len(same_index)} with the generator's index date, labels agree for {agree}"
    )
    assert len(same_index) > 0.9 * len(t2d) and agree >= 0.99 * len(same_index)
    ra = {r.person_key: r for r in lake.read("gold.cohort_readmission_30d").collect()}
    has_ip = [k for k, t in truth.items() if t["has_inpatient"] == "true"]
    both = [k for k in has_ip if k in ra]
    assert len(both) >= 0.9 * len(has_ip)
    agree_ra = sum(int(ra[k].label == (truth[k]["readmit_30d"] == "true")) for k in both)
    print(
        f"readmission cohort: {len(ra)} persons, {len(both)} of {len(has_ip)} with an inpatient stay in truth, labels agree for {agree_ra}"
    )
    assert agree_ra >= 0.99 * len(both)
    # features: one row per cohort member, the label carried; Table 1 n = the cohort's size
    feats = lake.read("gold.features_t2d_incident")
    assert feats.count() == len(t2d) and feats.select("person_key").distinct().count() == len(t2d)
    n_row = lake.read("gold.table1_t2d_incident").where("variable = 'n'").first()
    assert (
        n_row is not None
        and int(n_row.overall) == len(t2d)
        and int(n_row.outcome_1) == sum(r.label for r in t2d.values())
    )
    md = (cfg.lake_root / "reports" / "table1_t2d_incident.md").read_text()
    assert "| lab_hba1c_last_1095d |" in md
    # the planted effects show: cases have higher HbA1c and BMI (SMD > 0.3)
    smd = {r.variable: r.smd for r in lake.read("gold.table1_t2d_incident").collect() if r.level is None}
    assert smd["lab_hba1c_last_1095d"] > 0.3 and smd["lab_bmi_last_1095d"] > 0.3
