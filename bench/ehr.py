"""Benchmark: EHR at scale, ingest_ehr + conform_ehr + build_cohort, against a DuckDB conform.

At one size (patients), on one seeded messy Synthea cohort (``omicslake generate``, messy: 1 %
exact duplicate lines, malformed lines, unparseable dates, glucose in mmol/L and weight in lb,
visits after death, a second batch of late corrections and a drifted column; no genomes, no
survey), runs each job as its own process (``omicslake run <job>``, as a user would), and
records its wall time, its own seconds (ops.runs), rows per second and the peak resident
memory of the process tree (the Python driver and its JVM, sampled every 0.5 s). The peer is
``bench/ehr_conform.sql``: the same conform (typing, pseudonyms, unit conversion, concept ids,
de-duplication, the quarantine rules) as one DuckDB script on the same CSV files, in its own
process; the silver row counts (and the quarantined and duplicate counts) of both sides are
compared table by table, each counted from its own output.

Above ``GENERATE_LIMIT`` patients the cohort is not generated (hours on 2 cores): a generated
cohort of ``patients / copies`` is replicated in its landing files (every id in copy k gets the
suffix ``-k``: copy k is a new set of patients with the same histories), so both sides still read
the same files; the record says ``"inputs": {"mode": "replicated", ...}``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Timer, ratio
from bench.scale import SILVER  # the silver EHR tables both sides count

GENERATE_LIMIT = 100_000  # above: replicate the landing files of a generated cohort of this size
JOBS = ("ingest_ehr", "conform_ehr", "build_cohort")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def plan(patients: int, limit: int = GENERATE_LIMIT) -> tuple[int, int]:
    """(patients to generate, copies of their files): generated as asked up to ``limit``, else the
    fewest copies of a generated cohort of at most ``limit`` patients that give exactly ``patients``."""
    if patients <= limit:
        return patients, 1
    copies = math.ceil(patients / limit)
    while patients % copies:
        copies += 1
    return patients // copies, copies


def replicate_line(line: str, copy: int) -> str:
    """One CSV line as in copy ``copy``: every UUID-shaped id gets the suffix ``-<copy>`` (copy 0 is the
    line itself), so that patients, encounters and their references stay consistent within a copy."""
    return line if copy == 0 else _UUID.sub(lambda m: f"{m.group(0)}-{copy}", line)


def replicate_synthea(source: Path, dest: Path, copies: int, chunk: int = 200_000) -> dict[str, int]:
    """Every <batch>/<table>.csv of source written to dest with ``copies`` copies of its data lines
    (one header; the copies of each block of ``chunk`` lines follow each other, so memory stays
    bounded); returns the data lines written per file."""
    written: dict[str, int] = {}
    for src in sorted(source.rglob("*.csv")):
        out = dest / src.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with src.open(encoding="utf-8", newline="") as f, out.open("w", encoding="utf-8", newline="") as g:
            g.write(f.readline())
            while block := list(itertools.islice(f, chunk)):
                marked = [_UUID.sub(lambda m: m.group(0) + "\x00", line) for line in block]  # one regex pass
                for k in range(copies):
                    sfx = f"-{k}" if k else ""
                    g.writelines(line.replace("\x00", sfx) for line in marked)
                    n += len(marked)
        written[str(src.relative_to(source))] = n
    return written


def growth_per_10x(sizes: list[int], seconds: list[float | None]) -> list[float | None]:
    """Between consecutive sizes: the factor time grows by per 10x data, (t2/t1) ** (1 / log10(n2/n1))
    (1: constant time, 10: linear). None where a time is missing or zero."""
    out: list[float | None] = []
    if len(sizes) != len(seconds):
        raise ValueError(f"{len(sizes)} sizes but {len(seconds)} times")
    for i in range(1, len(sizes)):
        n1, t1, n2, t2 = sizes[i - 1], seconds[i - 1], sizes[i], seconds[i]
        if not t1 or not t2 or n2 <= n1:
            out.append(None)
            continue
        out.append(round((t2 / t1) ** (1 / math.log10(n2 / n1)), 2))
    return out


def crossover(sizes: list[int], ratios: list[float | None]) -> int | None:
    """The smallest size from which ours / peer stays below 1 (Spark faster) for every larger size
    measured; None if it never does."""
    found = None
    for n, r in sorted(zip(sizes, ratios, strict=True), reverse=True):
        if r is None or r >= 1:
            break
        found = n
    return found


def agreement(ours: dict[str, dict[str, int]], peer: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Table by table, the silver, quarantined and duplicate rows of both sides; ``silver_agrees`` is
    true only when every silver table has the same row count on both (a table missing on one side
    disagrees)."""
    tables = sorted(set(ours) | set(peer))
    rows = {}
    differs = []
    for t in tables:
        a, b = ours.get(t), peer.get(t)
        rows[t] = {"ours": a, "duckdb": b}
        if a is None or b is None or a.get("silver") != b.get("silver"):
            differs.append(t)
    return {
        "tables": rows,
        "silver_agrees": not differs,
        "silver_differs": differs,
        "all_counts_agree": all(rows[t]["ours"] == rows[t]["duckdb"] for t in tables),
    }


def _job(exe: Path, job: str, overrides: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    from bench.common import measured

    cmd = [str(exe), "run", job, "--run-id", f"bench-{job}"]
    for s in overrides:
        cmd += ["--set", s]
    m = measured(cmd, log, env)
    if m.code:
        raise RuntimeError(f"{job} exited {m.code}: see {log}")
    return m.record()


def _spark_counts(lake: Any, metrics: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Rows of each silver table as written (counted from the table), and quarantined and duplicate rows
    from conform_ehr's reconciliation (itself counted from the tables)."""
    out = {}
    for t in SILVER:
        if not lake.exists(f"silver.{t}"):
            continue
        out[t] = {
            "silver": lake.read(f"silver.{t}").count(),
            "quarantined": int(json.loads(metrics.get(f"{t}_quarantined", "0"))),
            "duplicates": int(json.loads(metrics.get(f"{t}_duplicates", "0"))),
        }
    return out


def run(spark: Any, cfg: Any, work: Path, patients: int, seed: int = 11, peers: bool = True) -> dict[str, Any]:
    """Times, memory, rows/s, the DuckDB peer and the agreement at one size (a dict for the JSON)."""
    from pyspark.sql import functions as F

    from omicslake.io.delta import Lake
    from omicslake.jobs.base import execute

    timer = Timer()
    generated, copies = plan(patients)
    landing = work / f"ehr-{generated}-seed{seed}"
    gen_cfg = cfg.replace(
        **{
            "lake.root": str(work / f"ehr-gen-{generated}"),
            "jobs.generate.out": str(landing),
            "jobs.generate.patients": generated,
            "jobs.generate.samples": 0,
            "jobs.generate.seed": seed,
            "jobs.generate.messy": True,
            "jobs.generate.survey_share": 0.0,
            "jobs.generate.partitions": max(2, generated // 25_000),
        }
    )
    with timer("generate"):
        if not (landing / "manifest.json").exists():
            execute(spark, gen_cfg, "generate")  # raises on failure
    synthea = landing / "synthea"
    inputs: dict[str, Any] = {"patients": patients, "seed": seed, "messy": True, "generated_patients": generated}
    if copies > 1:
        synthea = work / f"ehr-{patients}-x{copies}" / "synthea"
        with timer("replicate"):
            if not synthea.exists():
                replicate_synthea(landing / "synthea", synthea, copies)
        inputs.update(mode="replicated", copies=copies)
    else:
        inputs["mode"] = "generated"
    files = sorted(synthea.rglob("*.csv"))
    inputs.update(
        synthea=str(synthea),
        files=len(files),
        csv_mb=round(sum(p.stat().st_size for p in files) / 1e6, 2),
        data_lines=sum(_lines(p) - 1 for p in files),
    )

    key = secrets.token_hex(32)  # a key of this run only, for both sides (synthetic patients)
    ref_date = time.strftime("%Y-%m-%d")
    lake_root = work / f"ehr-lake-{patients}"
    shutil.rmtree(lake_root, ignore_errors=True)  # every run lands everything (a kept --work folder has an old lake)
    overrides = [
        f"lake.root={lake_root}",
        "jobs.ingest_ehr.sources=[synthea]",
        f"jobs.ingest_ehr.synthea_dir={synthea}",
        f"jobs.conform_ehr.reference_date={ref_date}",
        f"spark.driver_memory={cfg.spark.driver_memory}",  # python -m bench --set spark.driver_memory=...
    ]
    env = {"OMICSLAKE_PSEUDONYM_KEY": key}
    exe = Path(sys.executable).with_name("omicslake")
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, Any] = {}
    for job in JOBS:
        procs[job] = _job(exe, job, overrides, env, logs / f"ehr-{patients}-{job}.log")

    lake = Lake(spark, cfg.replace(**{"lake.root": str(lake_root)}))
    runs = {
        r["job"]: r
        for r in lake.read("ops.runs")
        .where(F.col("job").isin(list(JOBS)))
        .select("job", "seconds", "metrics")
        .collect()
    }  # three rows
    job_s = {j: round(float(runs[j]["seconds"]), 3) for j in JOBS}
    m_in, m_conf = dict(runs["ingest_ehr"]["metrics"]), dict(runs["conform_ehr"]["metrics"])
    bronze_rows = int(json.loads(m_in.get("rows", "0")))
    conform_in = sum(int(json.loads(v)) for k, v in m_conf.items() if k.endswith("_in"))
    ours = _spark_counts(lake, m_conf)
    silver_rows = sum(c["silver"] for c in ours.values())
    for j in JOBS:
        procs[j]["job_seconds"] = job_s[j]
    procs["ingest_ehr"]["rows_per_second"] = round(bronze_rows / job_s["ingest_ehr"], 1)
    procs["conform_ehr"]["rows_per_second"] = round(conform_in / job_s["conform_ehr"], 1)
    procs["build_cohort"]["rows_per_second"] = round(silver_rows / job_s["build_cohort"], 1)
    procs["build_cohort"]["cohorts"] = {
        k: json.loads(v) for k, v in dict(runs["build_cohort"]["metrics"]).items() if not k.startswith("seconds")
    }
    record: dict[str, Any] = {
        "inputs": inputs,
        "rows": {"bronze": bronze_rows, "conform_in": conform_in, "silver": silver_rows},
        "jobs": procs,
    }
    seconds = {
        "generate": timer.seconds["generate"],
        **({"replicate": timer.seconds["replicate"]} if "replicate" in timer.seconds else {}),
        **job_s,
        "ingest_conform": round(job_s["ingest_ehr"] + job_s["conform_ehr"], 3),
        "ingest_conform_processes": round(
            procs["ingest_ehr"]["wall_seconds"] + procs["conform_ehr"]["wall_seconds"], 3
        ),
        "all_three": round(sum(job_s.values()), 3),
    }
    if peers:
        from bench.common import measured

        out = work / f"ehr-duckdb-{patients}"
        result_file = out.parent / f"ehr-duckdb-{patients}.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.ehr_duckdb",
            "--synthea",
            str(synthea),
            "--out",
            str(out),
            "--ref-date",
            ref_date,
            "--threads",
            str(spark.sparkContext.defaultParallelism),
            "--json",
            str(result_file),
        ]
        code, wall, tree, big, _ = measured(cmd, logs / f"ehr-{patients}-duckdb.log", env)
        if code:
            raise RuntimeError(f"the DuckDB peer exited {code}: see {logs / f'ehr-{patients}-duckdb.log'}")
        duck = json.loads(result_file.read_text())
        record["duckdb"] = {
            "wall_seconds": round(wall, 3),
            "script_seconds": duck["seconds"],
            "peak_rss_gib": round(tree / 2**30, 3),
            "version": duck["duckdb"],
            "settings": duck["settings"],
            "rows_per_second": round(conform_in / duck["seconds"], 1) if duck["seconds"] else None,
        }
        record["agreement"] = agreement(ours, duck["counts"])
        if not record["agreement"]["silver_agrees"]:
            record["checks_failed"] = [
                f"silver row counts differ between conform_ehr and the DuckDB script: {record['agreement']['silver_differs']}"
            ]
        seconds["duckdb"] = duck["seconds"]
        seconds["duckdb_process"] = round(wall, 3)
    else:
        record["counts"] = ours
    record["seconds"] = seconds
    record["ratios"] = {
        "ingest_conform_vs_duckdb": ratio(seconds["ingest_conform"], seconds.get("duckdb")),
        "conform_ehr_vs_duckdb": ratio(seconds["conform_ehr"], seconds.get("duckdb")),
        "ingest_conform_processes_vs_duckdb_process": ratio(
            seconds["ingest_conform_processes"], seconds.get("duckdb_process")
        ),
    }
    return record


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Across the sizes of one run: time growth per 10x data for each job and for ingest + conform (the
    issue's bar: <= 12), and the size from which Spark's ingest + conform beats the DuckDB script."""
    runs = sorted(runs, key=lambda r: r["size"]["patients"])
    sizes = [r["size"]["patients"] for r in runs]
    growth = {
        k: growth_per_10x(sizes, [r["seconds"].get(k) for r in runs])
        for k in (*JOBS, "ingest_conform", "all_three", "duckdb")
    }
    ratios = [r["ratios"].get("ingest_conform_vs_duckdb") for r in runs]
    return {
        "sizes": sizes,
        "growth_per_10x": growth,
        "growth_bar": 12,
        # None with one size (nothing to compare), else whether every job and ingest + conform stayed within the bar
        "growth_within_bar": all(g is None or g <= 12 for k in (*JOBS, "ingest_conform") for g in growth[k])
        if len(sizes) > 1
        else None,
        "spark_overtakes_duckdb_at": crossover(sizes, ratios),
        "silver_counts_agree": all(r.get("agreement", {}).get("silver_agrees", False) for r in runs),
    }


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
