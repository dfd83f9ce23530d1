"""The jobs of omicslake and the DAG they form.

Each job is a module here with ``run(spark, cfg, lake)`` and ``main(argv)``. ``DAG`` lists every
planned job with the jobs it depends on, in an order that respects those dependencies; the
pipeline runs those whose module exists.
"""

from __future__ import annotations

import importlib.util

DAG: dict[str, tuple[str, ...]] = {
    "generate": (),
    "ingest_vcf": ("generate",),
    "ingest_ehr": ("generate",),
    "genomic_qc": ("ingest_vcf",),
    "conform_ehr": ("ingest_ehr",),
    "genetic_features": ("genomic_qc",),
    "build_cohort": ("conform_ehr", "genetic_features"),
    "gwas": ("build_cohort", "genomic_qc"),
    "train": ("build_cohort",),
    "score": ("train",),
    "cluster": ("build_cohort",),
    "survival": ("build_cohort",),
    "report": ("gwas", "score", "cluster", "survival"),
}


def available_jobs() -> list[str]:
    """The DAG's jobs that are implemented, in dependency order."""
    return [j for j in DAG if importlib.util.find_spec(f"omicslake.jobs.{j}") is not None]


def runnable_jobs() -> list[str]:
    """Implemented jobs whose upstream jobs are all implemented too (what the pipeline runs)."""
    ok: list[str] = []
    have = set(available_jobs())
    for j in DAG:
        if j in have and all(d in ok for d in DAG[j]):
            ok.append(j)
    return ok
