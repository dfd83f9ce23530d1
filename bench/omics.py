"""Benchmark: an RNA-seq count matrix ingested and normalised (ingest_omics + omics_qc) against
pandas and anndata reading the same file and normalising it in numpy.

At one size (genes x samples), one seeded count matrix from the project's generator
(``omicslake.synth.omics.rnaseq_blocks``: negative binomial counts, per-gene mean and dispersion,
per-sample library size, planted DE genes) is written in two formats labs deliver: a gzipped
featureCounts TSV (its ``# Program`` line, ``Geneid Chr Start End Strand Length`` and one column per
sample) and an ``.h5ad`` written by anndata's own ``write_h5ad`` (dense ``X``, samples x genes, float32:
counts are exact). For each format, ours runs as a user would run it: ``omicslake run ingest_omics``
then ``omicslake run omics_qc``, each its own process, each timed (wall, and the job's own seconds in
ops.runs) with the peak resident memory of its process tree (Python driver + JVM + Python workers,
sampled every 0.5 s). The peers, each its own process (``bench/omics_peer.py``):
``pandas.read_csv`` of the TSV and ``anndata.read_h5ad`` of the .h5ad, then the same QC and
normalisation in numpy on the whole matrix (library sizes, low-counts rule, DESeq2 size factors,
log2 CPM, mean and variance per gene). The two sides must agree: the same genes kept, the same size
factors, the same mean and variance of every gene and the same values of the first genes (1e-9);
else the run is marked ``checks_failed``.

Memory: our readers stream blocks of ``jobs.ingest_omics.block_rows`` features and omics_qc keeps the
matrix distributed, so our peak should stay near flat as the matrix grows, while a peer holds the
whole matrix (and its copies). ``summarize`` compares the largest size with the smallest: peak memory
growth of each side against the growth in matrix cells. The 4x size grows the genes (the streamed
axis: transcript-level quantification and methylation arrays have 4-40x more rows than a gene
matrix), not the samples: each streamed row holds every sample, so 4x samples makes each block 4x
larger by design.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Timer, measured, ratio
from bench.omics_peer import FEATURECOUNTS_META, Thresholds

ASSAY = "rna"
FORMATS = {"tsv": "pandas", "h5ad": "anndata"}  # our format -> the peer that reads the same file
TOLERANCE = 1e-9
GROWTH_BAR = 1.5  # our peak memory may grow by at most this factor when the matrix grows 4x
PEER_BYTES_PER_CELL = 32  # a peer's peak, about: the int64 matrix, a float64 copy, its logs, the parser's buffers


def write_inputs(folder: Path, genes: int, samples: int, seed: int) -> dict[str, Any]:
    """The seeded count matrix as ``counts.txt.gz`` (featureCounts TSV, gzip level 1: level 6 costs 13x
    the CPU to write and reads at the same speed) and
    ``counts.h5ad`` (anndata's writer); reused when both are there."""
    import gzip

    from omicslake.synth.omics import OmicsSamples, rnaseq_blocks

    folder.mkdir(parents=True, exist_ok=True)
    tsv, h5ad = folder / "counts.txt.gz", folder / "counts.h5ad"
    if not (tsv.exists() and h5ad.exists()):
        import anndata
        import pandas as pd

        rng = np.random.default_rng(seed)
        ids = [f"S{j:06d}" for j in range(samples)]
        s = OmicsSamples(ids, rng.integers(0, 2, samples), rng.integers(0, 3, samples))
        x = np.empty((samples, genes), dtype=np.float32)  # anndata's orientation: obs (samples) x var (genes)
        gene_ids: list[str] = []
        part = tsv.with_suffix(".part")
        with part.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            gz.write(b'# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "genes.gtf" (omicslake bench)\n')
            gz.write(("Geneid\t" + "\t".join(FEATURECOUNTS_META) + "\t" + "\t".join(ids) + "\n").encode())
            for block_ids, counts, _, _ in rnaseq_blocks(s, genes, seed):
                g0 = len(gene_ids)
                x[:, g0 : g0 + len(block_ids)] = counts.T
                gene_ids += block_ids
                lines = [
                    f"{gid}\tchr{(g0 + i) % 22 + 1}\t{10_000 + 5_000 * (g0 + i)}\t{10_000 + 5_000 * (g0 + i) + 1999}"
                    f"\t{'+-'[(g0 + i) % 2]}\t2000\t" + "\t".join(map(str, counts[i].tolist()))
                    for i, gid in enumerate(block_ids)
                ]
                gz.write(("\n".join(lines) + "\n").encode())
        part.rename(tsv)
        ad = anndata.AnnData(
            X=x,
            obs=pd.DataFrame({"t2d": s.t2d.astype(str)}, index=pd.Index(ids, name="sample_id")),
            var=pd.DataFrame(index=pd.Index(gene_ids, name="gene_id")),
        )
        ad.write_h5ad(h5ad.with_suffix(".part.h5ad"))
        h5ad.with_suffix(".part.h5ad").rename(h5ad)
        del ad, x
    return {
        "tsv": str(tsv),
        "h5ad": str(h5ad),
        "tsv_mb": round(tsv.stat().st_size / 1e6, 2),
        "h5ad_mb": round(h5ad.stat().st_size / 1e6, 2),
        "genes": genes,
        "samples": samples,
        "cells": genes * samples,
        "seed": seed,
        "generator": "omicslake.synth.omics.rnaseq_blocks (negative binomial)",
    }


def peer_fits(cells: int, available: int, bytes_per_cell: int = PEER_BYTES_PER_CELL) -> str | None:
    """None when a whole-matrix peer of ``cells`` should fit in ``available`` bytes, else why it is
    skipped (a peer that runs out of memory on a shared machine takes others down with it)."""
    need = cells * bytes_per_cell
    if need <= available:
        return None
    return (
        f"skipped: needs about {need / 2**30:.1f} GiB ({bytes_per_cell} bytes per cell: the matrix, a float64 copy, "
        f"its logs, the parser's buffers) and {available / 2**30:.1f} GiB were available"
    )


def _available() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def compare(peer: dict[str, np.ndarray], ours: dict[str, Any], tol: float = TOLERANCE) -> list[str]:
    """What differs between the peer's normalisation (its npz) and ours (read back from silver): the
    kept genes, the samples passing (by sample id), the size factors, every gene's mean and variance and the values of
    the peer's check genes, each within ``tol``. Empty when both computed the same."""
    bad = []
    kept = [str(g) for g in peer["kept"]]
    if sorted(kept) != sorted(ours["kept"]):
        extra, missing = set(ours["kept"]) - set(kept), set(kept) - set(ours["kept"])
        bad.append(f"kept genes differ: {len(extra)} only ours, {len(missing)} only the peer's")
        return bad
    ids = [str(x) for x in peer["samples"]]
    if [bool(p) for p in peer["passing"]] != [ours["passing"].get(x) for x in ids]:
        bad.append("the samples passing QC differ")
        return bad
    sf = np.array([ours["size_factor"][x] for x, p in zip(ids, peer["passing"], strict=True) if p], dtype=np.float64)
    if sf.shape != peer["size_factor"].shape or not np.allclose(sf, peer["size_factor"], rtol=tol, atol=0):
        bad.append("size factors differ")
    order = {g: i for i, g in enumerate(kept)}
    for name in ("mean", "variance"):
        ours_v = np.full(len(kept), np.nan)
        for g, v in ours[name].items():
            ours_v[order[g]] = np.nan if v is None else v
        if not np.allclose(ours_v, peer[name], rtol=tol, atol=tol):
            worst = int(np.nanargmax(np.abs(ours_v - peer[name])))
            bad.append(
                f"{name} differs (largest at {kept[worst]}: {float(ours_v[worst]):.12g} vs {float(peer[name][worst]):.12g})"
            )
    for g, want in zip(peer["check_ids"], peer["check_values"], strict=True):
        got = ours["values"].get(str(g))
        if got is None or not np.allclose(np.asarray(got, dtype=np.float64), want, rtol=tol, atol=tol):
            bad.append(f"log2 CPM of {g} differs")
    return bad


def memory_growth(runs: list[dict[str, Any]], sides: tuple[str, ...]) -> dict[str, Any]:
    """Between the smallest and the largest matrix (cells) of ``runs``: the growth in cells and, per
    side, the growth of its peak memory (peak_rss_gib[side] at the largest / at the smallest; None
    where a side was not measured at both). ``bounded``: our sides (names starting ``ours``) all grew
    by at most GROWTH_BAR; None with fewer than two sizes."""
    runs = sorted(runs, key=lambda r: r["inputs"]["cells"])
    if len(runs) < 2:
        return {"cells_growth": None, "peak_memory_growth": {}, "bounded": None, "bar": GROWTH_BAR}
    small, large = runs[0], runs[-1]
    growth = {}
    for side in sides:
        a, b = small["peak_rss_gib"].get(side), large["peak_rss_gib"].get(side)
        growth[side] = round(b / a, 3) if a and b else None
    ours = [g for s, g in growth.items() if s.startswith("ours")]
    return {
        "cells_growth": round(large["inputs"]["cells"] / small["inputs"]["cells"], 3),
        "peak_memory_growth": growth,
        "bounded": bool(ours) and all(g is not None and g <= GROWTH_BAR for g in ours),
        "bar": GROWTH_BAR,
    }


def _silver(spark: Any, cfg: Any, lake_root: Path, check_ids: list[str]) -> dict[str, Any]:
    """What compare needs of our output, read back from the lake: kept genes with their mean and
    variance (three small columns), the check genes' values, and the samples' pass flags and size factors."""
    from pyspark.sql import functions as F

    from omicslake.io.delta import Lake

    lake = Lake(spark, cfg.replace(**{"lake.root": str(lake_root)}))
    silver = lake.read(f"silver.omics_{ASSAY}")
    rows = silver.select("feature_id", "mean", "variance").collect()  # one row per gene, no values
    checks = silver.where(F.col("feature_id").isin(check_ids)).select("feature_id", "values").collect()
    samples = lake.read(f"silver.omics_samples_{ASSAY}").select("sample_id", "passed", "size_factor").collect()
    return {
        "kept": [r.feature_id for r in rows],
        "mean": {r.feature_id: r.mean for r in rows},
        "variance": {r.feature_id: r.variance for r in rows},
        "values": {r.feature_id: r["values"] for r in checks},
        "passing": {r.sample_id: bool(r.passed) for r in samples},  # one row per sample
        "size_factor": {r.sample_id: r.size_factor for r in samples},
    }


def _ours(spark: Any, cfg: Any, work: Path, path: str, fmt: str, label: str, logs: Path) -> tuple[dict[str, Any], Path]:
    """ingest_omics then omics_qc, each as its own process on a fresh lake; their wall seconds, job
    seconds (ops.runs) and peak memory."""
    from pyspark.sql import functions as F

    from omicslake.io.delta import Lake

    lake_root = work / f"omics-lake-{label}-{fmt}"
    shutil.rmtree(lake_root, ignore_errors=True)
    files = [{"path": path, "assay": ASSAY, "assay_type": "rnaseq_counts", "format": fmt}]
    overrides = [
        f"lake.root={lake_root}",
        f"jobs.ingest_omics.files={json.dumps(files)}",
        f"spark.driver_memory={cfg.spark.driver_memory}",  # python -m bench --set spark.driver_memory=...
    ]
    exe = Path(sys.executable).with_name("omicslake")
    out: dict[str, Any] = {}
    for job in ("ingest_omics", "omics_qc"):
        cmd = [str(exe), "run", job, "--run-id", f"bench-{job}"]
        for s in overrides:
            cmd += ["--set", s]
        log = logs / f"omics-{label}-{fmt}-{job}.log"
        m = measured(cmd, log)
        if m.code:
            raise RuntimeError(f"{job} failed: see {log}")
        out[job] = m.record()
    lake = Lake(spark, cfg.replace(**{"lake.root": str(lake_root)}))
    runs = {
        r.job: r for r in lake.read("ops.runs").where(F.col("job").isin("ingest_omics", "omics_qc")).collect()
    }  # two rows
    for job in out:
        out[job]["job_seconds"] = round(float(runs[job].seconds), 3)
        out[job]["metrics"] = {k: json.loads(v) for k, v in dict(runs[job].metrics).items()}
    return out, lake_root


def _peer(reader: str, path: str, work: Path, label: str, logs: Path) -> dict[str, Any]:
    npz, js = work / f"omics-{label}-{reader}.npz", work / f"omics-{label}-{reader}.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.omics_peer",
        "--reader",
        reader,
        "--file",
        path,
        "--out",
        str(npz),
        "--json",
        str(js),
    ]
    log = logs / f"omics-{label}-{reader}.log"
    m = measured(cmd, log)
    if m.code:
        raise RuntimeError(f"the {reader} peer failed: see {log}")
    rec = json.loads(js.read_text())
    rec.update(m.record())
    with np.load(npz) as z:
        rec["_npz"] = {k: z[k] for k in z.files}
    return rec


def run(
    spark: Any,
    cfg: Any,
    work: Path,
    genes: int,
    samples: int,
    seed: int = 17,
    peers: bool = True,
    formats: tuple[str, ...] = tuple(FORMATS),
) -> dict[str, Any]:
    """Times, peak memory and agreement of ours and the peers at one size (a dict for the JSON)."""
    from omicslake.config import OmicsQcConfig

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown omics format(s) {sorted(unknown)}: choose from {list(FORMATS)}")
    qc = OmicsQcConfig()
    if Thresholds() != Thresholds(**{k: getattr(qc, k) for k in Thresholds.__dataclass_fields__}):
        raise RuntimeError("bench.omics_peer.Thresholds no longer matches OmicsQcConfig's defaults")
    label = f"{genes}x{samples}"
    timer = Timer()
    with timer("generate"):
        inputs = write_inputs(work / f"omics-{label}-seed{seed}", genes, samples, seed)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {"generate": timer.seconds["generate"]}
    peak: dict[str, float] = {}
    cpu: dict[
        str, float
    ] = {}  # CPU seconds of the process trees (wall time on a busy shared machine is mostly waiting)
    jobs: dict[str, Any] = {}
    peer_rec: dict[str, Any] = {}
    failed: list[str] = []
    skipped: dict[str, str] = {}
    load = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: how busy it was as this size began
    for fmt in formats:
        procs, lake_root = _ours(spark, cfg, work, inputs[fmt], fmt, label, logs)
        jobs[fmt] = procs
        ours = f"ours_{fmt}"
        seconds[f"{ours}_ingest"] = procs["ingest_omics"]["job_seconds"]
        seconds[f"{ours}_qc"] = procs["omics_qc"]["job_seconds"]
        seconds[ours] = round(seconds[f"{ours}_ingest"] + seconds[f"{ours}_qc"], 3)
        seconds[f"{ours}_processes"] = round(sum(p["wall_seconds"] for p in procs.values()), 3)
        peak[ours] = max(p["peak_rss_gib"] for p in procs.values())
        cpu[ours] = round(sum(p["cpu_seconds"] for p in procs.values()), 3)
        reader = FORMATS[fmt]
        skip = peer_fits(inputs["cells"], _available()) if peers else "--no-peers"
        if skip:
            peer_rec[reader] = {"skipped": skip}
            skipped[reader] = skip
        else:
            rec = _peer(reader, inputs[fmt], work, label, logs)
            z = rec.pop("_npz")
            seconds[reader] = rec["seconds"]
            seconds[f"{reader}_read"] = rec["read_seconds"]
            seconds[f"{reader}_process"] = rec["wall_seconds"]
            peak[reader] = rec["peak_rss_gib"]
            cpu[reader] = rec["cpu_seconds"]
            peer_rec[reader] = rec
            diff = compare(z, _silver(spark, cfg, lake_root, [str(g) for g in z["check_ids"]]))
            rec["agrees_with_ours"] = not diff
            failed += [f"{fmt} vs {reader}: {d}" for d in diff]
        shutil.rmtree(lake_root, ignore_errors=True)
    record: dict[str, Any] = {
        "inputs": inputs,
        "load_average_at_start": load,
        "config": {
            "block_rows": cfg.jobs.ingest_omics.block_rows,
            "driver_memory": cfg.spark.driver_memory,
            "master": cfg.spark.master,
            "thresholds": Thresholds().__dict__,
        },
        "jobs": jobs,
        "peers": peer_rec,
        "seconds": seconds,
        "peak_rss_gib": peak,
        "cpu_seconds": cpu,
        "ratios": {},
        "memory_ratios": {},
        "cpu_ratios": {},
    }
    for fmt in formats:
        reader = FORMATS[fmt]
        record["ratios"][f"ours_{fmt}_vs_{reader}"] = ratio(seconds[f"ours_{fmt}"], seconds.get(reader))
        record["ratios"][f"ours_{fmt}_processes_vs_{reader}_process"] = ratio(
            seconds[f"ours_{fmt}_processes"], seconds.get(f"{reader}_process")
        )
        record["memory_ratios"][f"ours_{fmt}_vs_{reader}"] = ratio(peak[f"ours_{fmt}"], peak.get(reader))
        record["cpu_ratios"][f"ours_{fmt}_vs_{reader}"] = ratio(cpu[f"ours_{fmt}"], cpu.get(reader))
    if failed:
        record["checks_failed"] = failed
    if skipped:
        record["peers_skipped"] = skipped  # python -m bench accepts these missing ratios
    return record


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak memory growth of every side from the smallest matrix to the largest (see memory_growth)."""
    sides = sorted({s for r in runs for s in r["peak_rss_gib"]})
    return memory_growth(runs, tuple(sides))
