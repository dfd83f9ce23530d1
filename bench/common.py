"""Shared parts of the benchmarks: the machine and versions, a timer, seeded inputs.

Every benchmark gets one started session (Spark + Hail) and generated inputs; it times our job
and its peers on the same files in the same run and returns a record (inputs, sizes, timings,
ratios) that ``python -m bench`` writes to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


def machine() -> dict[str, Any]:
    """Cores, memory and load of this machine (the load says how shared it was)."""
    with open("/proc/meminfo") as f:
        mem = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem["MemTotal"] / 2**20, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def tool_version(args: list[str]) -> str | None:
    """The first line a reference tool prints about its version; None if it is not installed."""
    if shutil.which(args[0]) is None:
        return None
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0]


def versions() -> dict[str, str | None]:
    """Versions of the libraries and reference tools the benchmarks compare (None: not installed)."""
    import hail
    import pyspark

    import omicslake

    return {
        "omicslake": getattr(omicslake, "__version__", None),
        "pyspark": pyspark.__version__,
        "hail": hail.__version__,
        "numpy": np.__version__,
        "plink2": tool_version(["plink2", "--version"]),
        "bcftools": tool_version(["bcftools", "--version"]),
        **{name: _package_version(name) for name in ("duckdb", "scikit-learn", "lightgbm", "delta-spark", "mlflow")},
    }


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Timer:
    """Wall times of named steps, in seconds, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - t, 3)


def generate_vcf(work: Path, variants: int, samples: int, seed: int, reference: str = "GRCh37") -> dict[str, Any]:
    """One seeded VCF.bgz from the project's genome simulator (three ancestries, 1 % missing
    calls, 2 % multi-allelic sites, GT:DP:GQ:AD), with a case/control phenotype drawn from the
    planted genetic score plus two covariates (a standardised age that moves the risk, and sex).
    Files in ``work/data-<size>-seed<seed>-<reference>/``: cohort.vcf.bgz, pheno.tsv (PLINK 1/2), covar.tsv;
    reused when already there (the benchmarks of one run share them)."""
    from omicslake.synth import genomes

    work = work / f"data-{variants}x{samples}-seed{seed}-{reference}"
    work.mkdir(parents=True, exist_ok=True)
    vcf, pheno, covar = work / "cohort.vcf.bgz", work / "pheno.tsv", work / "covar.tsv"
    if not (vcf.exists() and pheno.exists() and covar.exists()):
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        assert spark is not None
        link = genomes.sample_link(spark, samples, samples, seed)
        parts = max(2, variants // 2500)
        mt = genomes.simulate(link, variants, seed, parts, reference, str(work / "sim.mt"))
        genomes.export_vcf(mt, str(vcf))
        scores = genomes.genetic_scores(mt).collect()  # one number per sample
        ids = [r.sample_id for r in scores]
        s = np.array([r.genetic_score for r in scores])
        rng = np.random.default_rng(seed)
        age = rng.normal(0, 1, len(ids)).round(4)
        sex = rng.integers(0, 2, len(ids))
        risk = s + 0.4 * age + 0.3 * (sex - 0.5) + rng.logistic(0, 0.6, len(ids))
        case = (risk > np.median(risk)).astype(int)
        pheno.write_text("#IID\tY\n" + "".join(f"{i}\t{c + 1}\n" for i, c in zip(ids, case, strict=True)))
        covar.write_text(
            "#IID\tage\tsex\n"
            + "".join(f"{i}\t{float(a)!r}\t{int(x)}\n" for i, a, x in zip(ids, age, sex, strict=True))
        )
        shutil.rmtree(work / "sim.mt", ignore_errors=True)
    return {
        "folder": str(work),
        "vcf": str(vcf),
        "pheno": str(pheno),
        "covar": str(covar),
        "vcf_mb": round(vcf.stat().st_size / 1e6, 2),
        "variants": variants,
        "samples": samples,
        "seed": seed,
        "reference": reference,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded to 3 places; None when either is missing or b is 0."""
    return round(a / b, 3) if a is not None and b else None


class Measured(NamedTuple):
    """One process run by ``measured``: exit code, wall seconds, peak resident bytes of its process tree
    and of its largest single process (sampled every 0.5 s), and CPU seconds of the tree."""

    code: int
    seconds: float
    tree: int
    biggest: int
    cpu: float

    def record(self) -> dict[str, float]:
        """The figures a result file keeps (GiB, rounded)."""
        return {
            "wall_seconds": round(self.seconds, 3),
            "peak_rss_gib": round(self.tree / 2**30, 3),
            "largest_gib": round(self.biggest / 2**30, 3),
            "cpu_seconds": round(self.cpu, 3),
        }


def tree_usage(root: int) -> tuple[int, int, float]:
    """(resident bytes summed over ``root`` and its live descendants, the largest single process's,
    their CPU seconds including what each reaped of its own children: cutime + cstime). CPU time,
    unlike wall time, hardly depends on how busy a shared machine is."""
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(d))
            usage[int(d)] = (int(fields[21]) * page, sum(int(x) for x in fields[11:15]) / tick)
        except (OSError, IndexError, ValueError):
            continue
    todo, total, biggest, cpu = [root], 0, 0, 0.0
    while todo:
        p = todo.pop()
        r, c = usage.get(p, (0, 0.0))
        total, biggest, cpu = total + r, max(biggest, r), cpu + c
        todo.extend(children.get(p, []))
    return total, biggest, cpu


def measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Measured:
    """Run cmd (``env`` added to this process's environment, output to ``log``), sampling its process
    tree every 0.5 s; its CPU seconds are the last sample or the rusage of the process and what it
    reaped, whichever is larger."""
    import threading

    peak, big, cpu = [0], [0], [0.0]
    with log.open("w") as out:
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                r, b, c = tree_usage(proc.pid)
                peak[0], big[0], cpu[0] = max(peak[0], r), max(big[0], b), max(cpu[0], c)
                done.wait(0.5)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t
        done.set()
        th.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, wall, peak[0], big[0], max(cpu[0], usage.ru_utime + usage.ru_stime))
