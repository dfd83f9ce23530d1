"""Broken and hostile EHR files (issue 15): one ingest_ehr run over hand-made Synthea CSV and FHIR
NDJSON files. Each file is its own unit: a file that cannot be read as its table is refused with an
error naming the file (and line) and what to do, recorded in ops.ingested_files, and leaves no row
in bronze; the others land with every line kept, odd lines rescued with the reason.

CSV: another delimiter, a quoted header, Latin-1 bytes, a zero-byte and a newline-only file, a
10 MB field, NA as null, a missing and a renamed column. NDJSON: a broken line, a resource of
another type than its file, the same resource id twice in one file and across two files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.contracts import load_contract
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

COLS = [c for c in load_contract("bronze.synthea_patients").names if not c.startswith("_")]


def _row(i: int, **values: str) -> list[str]:
    base = {c: "" for c in COLS}
    base.update(Id=f"p{i}", BIRTHDATE="1970-01-0" + str(i % 9 + 1), GENDER="F", RACE="white", FIRST=f"Ann{i}")
    base.update(values)
    return [base[c] for c in COLS]


def _csv(rows: list[list[str]], cols: list[str] = COLS, sep: str = ",", quote_header: bool = False) -> str:
    head = sep.join(f'"{c}"' if quote_header else c for c in cols)
    return head + "\n" + "".join(sep.join(r) + "\n" for r in rows)


def _resource(kind: str, rid: str, patient: str = "p1") -> str:
    if kind == "Patient":
        return f'{{"resourceType": "Patient", "id": "{rid}", "gender": "female", "birthDate": "1970-01-01"}}'
    return (
        f'{{"resourceType": "{kind}", "id": "{rid}", "subject": {{"reference": "Patient/{patient}"}}, '
        '"status": "final", "effectiveDateTime": "2020-01-01T00:00:00Z"}'
    )


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    syn, fhir = tmp_path / "synthea", tmp_path / "fhir"
    files: dict[str, bytes] = {
        "good": _csv([_row(1), _row(2)]).encode(),
        "semicolon": _csv([_row(3)], sep=";").encode(),
        "quoted_header": _csv([_row(4), _row(5)], quote_header=True).encode(),
        "latin1": _csv([_row(6), _row(7, FIRST="Ren\xe9")]).encode("latin-1"),
        "zero_bytes": b"",
        "newlines_only": b"\n\n\n",
        "big_field": _csv([_row(8, ADDRESS="x" * 10_000_000)]).encode(),
        "na_as_null": _csv([_row(9, DEATHDATE="NA", MARITAL="NA")]).encode(),
        "missing_column": _csv(
            [[v for c, v in zip(COLS, _row(10), strict=True) if c != "DEATHDATE"]],
            [c for c in COLS if c != "DEATHDATE"],
        ).encode(),
        "renamed_column": _csv([_row(11)], [("BIRTH_DATE" if c == "BIRTHDATE" else c) for c in COLS]).encode(),
    }
    out = {}
    for batch, data in files.items():
        (syn / batch).mkdir(parents=True)
        (syn / batch / "patients.csv").write_bytes(data)
        out[batch] = syn / batch / "patients.csv"
    fhir.mkdir()
    (fhir / "Patient.ndjson").write_text(
        "\n".join([_resource("Patient", "p1"), _resource("Patient", "p2"), _resource("Patient", "p1")]) + "\n"
    )
    (fhir / "Observation.ndjson").write_text(
        "\n".join(
            [_resource("Observation", "o1"), '{"resourceType": "Observation", "id": "o2", ', _resource("Patient", "p3")]
        )
        + "\n"
    )
    (fhir / "Observation.001.ndjson").write_text(_resource("Observation", "o1") + "\n")
    out["fhir"] = fhir
    return out


REFUSED = {
    "semicolon": ["none of the expected columns"],
    "latin1": ["line 3", "not UTF-8", "Re-export it as UTF-8"],
    "zero_bytes": ["line 1", "no header line"],
    "newlines_only": ["line 1", "no header line"],
}


@pytest.mark.slow
def test_each_hostile_ehr_file_is_refused_by_name_or_lands_whole(
    spark: SparkSession, cfg: Config, inputs: dict[str, Path]
) -> None:
    run_cfg = cfg.replace(
        **{
            "jobs.ingest_ehr.sources": ("synthea", "fhir"),
            "jobs.ingest_ehr.synthea_dir": str(inputs["good"].parent.parent),
            "jobs.ingest_ehr.fhir_dir": str(inputs["fhir"]),
        }
    )
    with pytest.raises(InputError) as err:
        execute(spark, run_cfg, "ingest_ehr", run_id="hostile")
    msg = str(err.value)
    assert msg.startswith(f"{len(REFUSED)} input file(s) refused") and "on_bad_file=skip" in msg
    lake = Lake(spark, run_cfg)
    ledger = {Path(r.path).parent.name + "/" + Path(r.path).name: r for r in lake.read("ops.ingested_files").collect()}
    by_batch = {k.split("/")[0]: r for k, r in ledger.items() if k.endswith("patients.csv")}
    for batch, words in REFUSED.items():
        r = by_batch[batch]
        assert r.status == "failed" and str(inputs[batch]) in r.error, (batch, r.error)
        assert all(w in r.error for w in words), (batch, r.error)
    assert "Ren" not in by_batch["latin1"].error and "0xE9" in by_batch["latin1"].error  # the byte, never the value
    landed = {b for b, r in by_batch.items() if r.status == "landed"}
    assert landed == set(inputs) - set(REFUSED) - {"fhir"}
    patients = lake.read("bronze.synthea_patients")
    refused_paths = [str(inputs[b]) for b in REFUSED]
    assert patients.where(F.col("_source_file").isin(refused_paths)).count() == 0
    rows = {r.Id: r for r in patients.collect() if r.Id}  # a handful of rows
    assert set(rows) == {"p1", "p2", "p4", "p5", "p8", "p9", "p10", "p11"}
    assert rows["p4"].BIRTHDATE == "1970-01-05"  # the quoted header's names were read without their quotes
    assert len(rows["p8"].ADDRESS) == 10_000_000  # one field of 10 MB, whole
    assert rows["p9"].DEATHDATE == "NA"  # kept as delivered; conform_ehr decides what NA means
    assert rows["p10"].DEATHDATE is None  # a column the file lacks is null
    assert rows["p11"].BIRTHDATE is None and rows["p11"]._rescued == {"BIRTH_DATE": "1970-01-03"}
    # NDJSON: every line kept; the broken line and the Patient in an Observation file are rescued with why
    obs = lake.read("bronze.fhir_observation").orderBy("_source_file", "_line").collect()
    assert len(obs) == 4
    broken = [r for r in obs if r._rescued and "_reason" not in r._rescued]
    other = [r for r in obs if r._rescued and "_reason" in r._rescued]
    assert len(broken) == 1 and broken[0].resource_type is None
    assert len(other) == 1 and other[0]._rescued["_reason"] == "resourceType Patient in a Observation file"
    # the same id in two files: both lines in bronze, one from each file
    assert sorted((r.id, Path(r._source_file).name) for r in obs if r.id) == [
        ("o1", "Observation.001.ndjson"),
        ("o1", "Observation.ndjson"),
    ]
    pats = lake.read("bronze.fhir_patient").collect()
    assert sorted(r.id for r in pats) == ["p1", "p1", "p2"]  # conform_ehr dedupes; bronze keeps every line
