"""Benchmark: our VCF -> bronze.variants against Hail's own MatrixTable write and bcftools.

On one seeded VCF.bgz, in the same run: (1) ``omicslake run ingest_vcf`` (Hail import -> checks ->
Delta) with every check on, (2) the same with ``text_checks=false``, (3) ``hl.import_vcf(...).write(...)``
with the same partitioning, (4) ``bcftools view -Ou`` (single thread, BCF out).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.common import Timer, generate_vcf, ratio


def run(
    spark: Any, cfg: Any, work: Path, variants: int, samples: int, seed: int = 7, peers: bool = True
) -> dict[str, Any]:
    """Times and ratios at one size (a dict for the JSON)."""
    import hail as hl

    from omicslake.jobs.base import execute

    timer = Timer()
    with timer("generate_inputs"):
        data = generate_vcf(work, variants, samples, seed)  # the GWAS benchmark's file at the same size
    vcf, folder, ref = data["vcf"], Path(data["folder"]), data["reference"]
    parts = 2 * spark.sparkContext.defaultParallelism
    with timer("ours"):
        r = execute(
            spark,
            cfg.replace(
                **{
                    "lake.root": str(work / "lake-ingest"),
                    "jobs.ingest_vcf.paths": [vcf],
                    "jobs.ingest_vcf.reference_genome": ref,
                }
            ),
            "ingest_vcf",
        )
    with timer("ours_text_checks_off"):
        r_off = execute(  # execute raises on a failed job
            spark,
            cfg.replace(
                **{
                    "lake.root": str(work / "lake-ingest2"),
                    "jobs.ingest_vcf.paths": [vcf],
                    "jobs.ingest_vcf.text_checks": False,
                    "jobs.ingest_vcf.reference_genome": ref,
                }
            ),
            "ingest_vcf",
        )
    if peers:
        with timer("hail_import_vcf_write"):
            hl.import_vcf(vcf, reference_genome=ref, force_bgz=True, min_partitions=parts).write(
                str(folder / "hail.mt"), overwrite=True
            )
        if shutil.which("bcftools"):
            with timer("bcftools_view_Ou"):
                subprocess.run(["bcftools", "view", "-Ou", "-o", str(folder / "out.bcf"), vcf], check=True)
    t = timer.seconds
    return {
        "inputs": data,
        "ours": {
            "records": r.metrics.get("variants"),
            "metrics": {k: v for k, v in r.metrics.items() if isinstance(v, int | float)},
            # the job's own stage times (its metrics' seconds): where an ingest spends its time
            "stages": r.metrics.get("seconds"),
            "stages_text_checks_off": r_off.metrics.get("seconds"),
        },
        "seconds": t,
        "ratios": {
            "ours_vs_hail": ratio(t["ours"], t.get("hail_import_vcf_write")),
            "ours_vs_bcftools": ratio(t["ours"], t.get("bcftools_view_Ou")),
            "ours_text_checks_off_vs_hail": ratio(t["ours_text_checks_off"], t.get("hail_import_vcf_write")),
        },
    }
