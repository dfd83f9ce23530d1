"""Secrets and PHI in everything a pipeline run leaves behind (issue 15).

The session's whole-pipeline lake (tests/pipeline_lake.py: the demo pipeline through spark-submit on
a standalone cluster, then score alone) is scanned with everything the run printed and logged:

- the pseudonymisation key, as its bytes, in every file under the lake root (every layer, Delta logs,
  Parquet, MLflow's store and artifacts, reports), in the driver's output and logs, in the cluster's
  master, worker and executor logs, and in every value of the ops tables;
- bronze's direct identifiers (source ids, SSNs, licence and passport numbers, names and name pairs,
  addresses: tests/integration/phi_scan.py) in every text file outside bronze and landing (reports,
  MLflow's store, params, tags and artifacts, logs) and in every value of the ops tables.

A scanner that finds nothing proves nothing, so each scan is first run on planted copies: the key and
an identifier written into a log, the key inside a Parquet file of a copied table. Hits are reported
as counts per file and kind, never as values.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import load_config
from omicslake.io.delta import Lake

JSON_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|[nrtbf\"\\/])")
WORD = re.compile(r"[^\W_]+")  # letters and digits; everything else separates (as phi_scan.SEPARATORS)
TEXT_SUFFIXES_SKIPPED = (".parquet", ".png", ".crc", ".jar", ".whl", ".zip", ".gz", ".bgz", ".bed", ".pyc")
MAX_TEXT_BYTES = 64 * 1024 * 1024


def _files(*roots: Path) -> list[Path]:
    return [p for r in roots for p in sorted(r.rglob("*")) if p.is_file() and not p.is_symlink()]


def key_hits(files: Iterable[Path], key: str) -> list[str]:
    """The files whose bytes contain the key (as written, or upper-cased hex)."""
    needles = {key.encode(), key.upper().encode()}
    return [str(p) for p in files if any(n in p.read_bytes() for n in needles)]


def _tokens(text: str) -> list[str]:
    return WORD.findall(JSON_ESCAPE.sub(" ", text).lower())


class IdentifierIndex:
    """Identifiers as token runs, indexed by their first token (as phi_scan does it in Spark)."""

    def __init__(self, ids: Iterable[tuple[str, str]]) -> None:
        self.by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for kind, text in ids:
            toks = tuple(text.split(" "))
            self.by_first.setdefault(toks[0], []).append((toks, kind))

    def hits(self, text: str) -> Counter[str]:
        toks = _tokens(text)
        found: Counter[str] = Counter()
        for i, t in enumerate(toks):
            for run, kind in self.by_first.get(t, ()):
                if tuple(toks[i : i + len(run)]) == run:
                    found[kind] += 1
        return found


def text_hits(files: Iterable[Path], index: IdentifierIndex) -> dict[str, dict[str, int]]:
    """{file: {kind: count}} for every text file (binary formats skipped; SQLite read as text)."""
    out = {}
    for p in files:
        if p.name.endswith(TEXT_SUFFIXES_SKIPPED) or p.stat().st_size > MAX_TEXT_BYTES:
            continue
        found = index.hits(p.read_bytes().decode("latin-1"))
        if found:
            out[str(p)] = dict(found)
    return out


def _table_texts(lake: Lake, layer: str) -> list[str]:
    """Every row of every table of a layer as JSON text (the ops tables are small)."""
    texts = []
    for name in lake.names():
        if name.startswith(layer + "."):
            df = lake.read(name)
            texts += [r[0] for r in df.select(F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))).collect()]
    return texts


@pytest.fixture(scope="module")
def scanned(spark: SparkSession, pipeline: dict[str, Any]) -> dict[str, Any]:
    from phi_scan import identifiers, synthea_identifiers

    lake_root: Path = pipeline["lake"]
    lake = Lake(spark, load_config("local", overrides=[f"lake.root={lake_root}"]))
    ids = identifiers(synthea_identifiers(lake.read("bronze.synthea_patients"), lake.read("bronze.synthea_encounters")))
    pairs = [(r.kind, r.text) for r in ids.collect()]
    return {
        "lake": lake,
        "root": lake_root,
        "logs": pipeline["logs"],
        "index": IdentifierIndex(pairs),
        "kinds": Counter(k for k, _ in pairs),
        "ops": _table_texts(lake, "ops"),
    }


def test_the_scanners_find_what_is_planted(scanned: dict[str, Any], tmp_path: Path) -> None:
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"]
    index: IdentifierIndex = scanned["index"]
    assert (
        scanned["kinds"]["ssn"] >= 700
        and scanned["kinds"]["name pair"] >= 1400
        and scanned["kinds"]["source id"] >= 800
    )
    # a name pair (as 'Last, First'), an SSN and the key in a log line
    pair = next(run for runs in index.by_first.values() for run, kind in runs if kind == "name pair")
    ssn = next(run for runs in index.by_first.values() for run, kind in runs if kind == "ssn")
    log = tmp_path / "job.log"
    log.write_text(f"INFO conform: row {pair[1].title()}, {pair[0].title()} ssn={'-'.join(ssn)} key={key}\n")
    hits = text_hits([log], index)[str(log)]  # the pair's names also count alone
    assert (hits["name pair"], hits["ssn"]) == (1, 1) and set(hits) <= {"name pair", "ssn", "name"}, hits
    assert key_hits([log], key) == [str(log)]
    # the key inside a Parquet file: a copied ops.runs with the key in one value
    spark = scanned["lake"].spark
    planted = tmp_path / "planted"
    spark.createDataFrame([("run-1", f"secret {key}")], "run_id string, note string").write.parquet(str(planted))
    assert key_hits(_files(planted), key), "the key in a Parquet value is not found in the file's bytes"


def test_the_key_is_nowhere(scanned: dict[str, Any]) -> None:
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"]
    files = _files(scanned["root"], *scanned["logs"])
    assert len(files) > 500  # the whole lake (Delta logs, Parquet, MLflow) and the logs
    assert key_hits(files, key) == []
    assert [t for t in scanned["ops"] if key in t] == []


def test_no_direct_identifier_outside_bronze_in_reports_mlflow_logs_or_ops(scanned: dict[str, Any]) -> None:
    root: Path = scanned["root"]
    outside = [p for p in _files(root) if p.relative_to(root).parts[0] not in ("bronze", "landing")]
    assert any(p.suffix == ".html" for p in outside) and any(p.name == "mlflow.db" for p in outside)
    logs = _files(*scanned["logs"])
    assert any(p.name == "stderr" for p in logs)  # the executors' logs are among them
    assert text_hits(outside + logs, scanned["index"]) == {}
    index: IdentifierIndex = scanned["index"]
    ops_hits: Counter[str] = Counter()
    for t in scanned["ops"]:
        ops_hits.update(index.hits(t))
    assert dict(ops_hits) == {}
