"""Benchmark: a comparative-effect study at scale, build_cohort + study, time and peak memory.

At one size (patients), on one seeded cohort generated with the planted drug exposure
(``omicslake generate``, ``exposure_share`` 1.0: ``conf/studies/new_vs_old_drug.yaml``'s new and old
drug, its outcomes, negative controls and mediator), conformed to silver by ingest_ehr and
conform_ehr; then ``build_cohort`` and ``study`` each run as their own process (``omicslake run
<job>``, as a user would), and the record keeps each one's wall time, its own seconds (ops.runs), its
CPU seconds and the peak resident memory of its process tree (the Python driver and its JVM, sampled
every 0.5 s), with the study's persons, matched persons and hazard ratios.

Above ``GENERATE_LIMIT`` patients the cohort is not generated (hours on 2 cores): the silver layer of
a generated cohort of ``patients / copies`` is written ``copies`` times (``bench.scale``: copy k's keys
suffixed ``.k``, a new set of patients with the same histories), and build_cohort and the study run
on that; the record says ``"inputs": {"mode": "replicated", ...}``. Copies share their histories, so
the estimates at that size say nothing new about the truth; time and memory are what it measures.

No peer runs: the reference, OHDSI's CohortMethod, is an R package on GitHub (not in Debian or on
CRAN) that runs against a database; the record says so in ``peers_skipped``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import Timer
from bench.ehr import _job, plan
from bench.scale import SILVER

GENERATE_LIMIT = 20_000  # above: replicate the silver layer of a generated cohort of at most this size
STUDY = "new_vs_old_drug"
JOBS = ("build_cohort", "study")


def run(spark: Any, cfg: Any, work: Path, patients: int, seed: int = 16, peers: bool = True) -> dict[str, Any]:
    """Times, memory and the study's numbers at one size (a dict for the JSON); ``peers`` is accepted
    for the runner's sake (there is no peer)."""
    from pyspark.sql import functions as F

    from bench.scale import replicate_silver
    from omicslake.io.delta import Lake
    from omicslake.jobs.base import execute
    from omicslake.synth.people import REFERENCE_DATE

    timer = Timer()
    generated, copies = plan(patients, GENERATE_LIMIT)
    gen_root = work / f"study-gen-{generated}-seed{seed}"
    gen_cfg = cfg.replace(
        **{
            "lake.root": str(gen_root),
            "jobs.generate.patients": generated,
            "jobs.generate.samples": 0,
            "jobs.generate.seed": seed,
            "jobs.generate.exposure_share": 1.0,
            "jobs.generate.survey_share": 0.0,
            "jobs.generate.partitions": max(2, generated // 25_000),
            "jobs.ingest_ehr.sources": ("synthea",),
            # ages top-coded at 90 as of the synthetic world's today, not the calendar's (docs/causal.md)
            "jobs.conform_ehr.reference_date": REFERENCE_DATE,
        }
    )
    key = os.environ.get(cfg.jobs.conform_ehr.key_env) or secrets.token_hex(32)  # synthetic patients
    env = {cfg.jobs.conform_ehr.key_env: key}
    # the generated lake up to silver, once per work folder (setup, not measured; execute raises on failure)
    if not Lake(spark, gen_cfg).exists("silver.person"):
        with mock.patch.dict(os.environ, env):
            for job in ("generate", "ingest_ehr", "conform_ehr"):
                with timer(job):
                    execute(spark, gen_cfg, job)
    inputs: dict[str, Any] = {"patients": patients, "seed": seed, "generated_patients": generated, "study": STUDY}
    lake_root = work / f"study-lake-{patients}"
    shutil.rmtree(lake_root, ignore_errors=True)  # build_cohort and the study run on a fresh gold layer
    lake_cfg = cfg.replace(**{"lake.root": str(lake_root)})
    if copies > 1:
        with timer("replicate"):
            silver = replicate_silver(Lake(spark, gen_cfg), Lake(spark, lake_cfg, run_id="bench-replicate"), copies)
        inputs.update(mode="replicated", copies=copies)
    else:
        shutil.copytree(gen_root, lake_root)
        lake = Lake(spark, lake_cfg)
        silver = {f"silver.{t}": lake.read(f"silver.{t}").count() for t in SILVER}
        inputs["mode"] = "generated"
    inputs["silver_rows"] = silver

    overrides = [f"lake.root={lake_root}", f"spark.driver_memory={cfg.spark.driver_memory}"]
    exe = Path(sys.executable).with_name("omicslake")
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = {job: _job(exe, job, overrides, env, logs / f"study-{patients}-{job}.log") for job in JOBS}

    lake = Lake(spark, lake_cfg)
    runs = {
        r["job"]: r
        for r in lake.read("ops.runs")
        .where(F.col("job").isin(list(JOBS)) & (F.col("status") == "succeeded"))
        .select("job", "seconds", "metrics")
        .collect()
    }
    job_s = {j: round(float(runs[j]["seconds"]), 3) for j in JOBS}
    for j in JOBS:
        procs[j]["job_seconds"] = job_s[j]
    res = json.loads(dict(runs["study"]["metrics"])[STUDY])
    persons = lake.read(f"gold.study_{STUDY}_ps").count()  # counted from what the study wrote
    procs["study"]["persons_per_second"] = round(persons / job_s["study"], 1) if job_s["study"] else None
    return {
        "inputs": inputs,
        "study": {
            "persons": persons,
            "counts": res["counts"],
            "hr": res["hr"],
            "max_abs_smd_after": res["max_abs_smd_after"],
            "mediation": res.get("mediation"),
            "cohort_persons": lake.read("gold.cohort_t2d_incident").count(),
        },
        "jobs": procs,
        "seconds": {**timer.seconds, **job_s, "both": round(sum(job_s.values()), 3)},
        "ratios": {},
        "peers_skipped": {
            "cohortmethod": "OHDSI CohortMethod is an R package on GitHub (not in Debian or on CRAN) that runs "
            "against a database; no peer on this machine"
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Across the sizes of one run: the time growth per 10x patients of each job."""
    from bench.ehr import growth_per_10x

    runs = sorted(runs, key=lambda r: r["size"]["patients"])
    sizes = [r["size"]["patients"] for r in runs]
    return {
        "sizes": sizes,
        "growth_per_10x": {k: growth_per_10x(sizes, [r["seconds"].get(k) for r in runs]) for k in (*JOBS, "both")},
        "peak_rss_gib": {k: [r["jobs"][k]["peak_rss_gib"] for r in runs] for k in JOBS},
    }
