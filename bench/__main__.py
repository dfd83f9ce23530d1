"""Every benchmark, one command: ``./dev bench [--quick]`` (or ``python -m bench``).

Starts one session (Spark + Hail, local mode), generates seeded inputs, runs each benchmark
against its peers on the same files in the same run, prints a table and writes
``bench/results/<name>.json`` (inputs, sizes, machine: cores, memory and load, versions, every
timing, every ratio). ``--quick`` is a smoke run at toy sizes (every benchmark runs, its ratios are computed; its parts
took 55 minutes together on a shared 2-core machine at load 15-20, the EHR one 38 of them) written to
``bench/results/quick/`` unless ``--out`` says otherwise. The README's table is generated from the
full results by ``python -m bench.table``. On a shared machine absolute times are inflated; the
ratios, measured in one run on one input, are what to read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES: dict[str, dict[str, list[tuple[int, ...]]]] = {
    # name: sizes per mode, each a tuple in the order of DIMS[name]
    "gwas": {"full": [(10_000, 2_000), (20_000, 2_000), (20_000, 5_000)], "quick": [(600, 200)]},
    "ingest_vcf": {"full": [(20_000, 2_000)], "quick": [(600, 200)]},
    "serve": {"full": [(40, 100)], "quick": [(40, 100)]},
    # 1,000,000 patients: 10 copies of a generated 100,000 (bench/ehr.py, GENERATE_LIMIT)
    "ehr": {"full": [(10_000,), (100_000,), (1_000_000,)], "quick": [(200,)]},
    "models": {"full": [(20_000,), (100_000,)], "quick": [(2_000,)]},
    # 100,000 and 1,000,000 patients: 5 and 50 copies of a generated 20,000's silver layer (bench/study.py)
    "study": {"full": [(20_000,), (100_000,), (1_000_000,)], "quick": [(300,)]},
    # the 4x matrix grows the genes, the axis the readers stream (bench/omics.py says why)
    "omics": {"full": [(20_000, 5_000), (80_000, 5_000)], "quick": [(2_000, 200)]},
}
DIMS = {
    "gwas": ("variants", "samples"),
    "ingest_vcf": ("variants", "samples"),
    "serve": ("features", "patients_per_batch"),  # numeric features of the model, patients per batch
    "ehr": ("patients",),
    "models": ("rows",),
    "study": ("patients",),
    "omics": ("genes", "samples"),
}


def _size(text: str) -> tuple[int, ...]:
    return tuple(int(v.replace(",", "").replace("_", "")) for v in text.lower().split("x"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="toy sizes: a smoke run (every benchmark runs and its ratios are computed)"
    )
    ap.add_argument("--only", default="", help="comma-separated benchmarks (default: all): " + ", ".join(SIZES))
    ap.add_argument(
        "--sizes",
        default="",
        help="override sizes, e.g. 20000x2000,20000x5000 (gwas: variants x samples), 10000,100000 (ehr: patients)",
    )
    ap.add_argument("--out", help="where the JSON goes (default bench/results, or bench/results/quick with --quick)")
    ap.add_argument("--work", help="work folder for inputs and lakes, kept (default: a temp folder, removed)")
    ap.add_argument("--no-peers", action="store_true", help="ours only (for profiling)")
    ap.add_argument("--formats", default="", help="omics: the input formats, e.g. tsv (default: tsv,h5ad)")
    ap.add_argument(
        "--append",
        action="store_true",
        help="add this run's sizes to the runs already in <out>/<name>.json (a run of the same size is replaced): "
        "a long benchmark run size by size",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for the session and the job processes, e.g. spark.driver_memory=12g",
    )
    args = ap.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else SIZES) if n]
    unknown = set(names) - set(SIZES)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {list(SIZES)}")
    out = Path(args.out) if args.out else HERE / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="omicslake-bench-"))

    from bench import common, ehr, gwas, ingest_vcf, models, omics, serve, study
    from omicslake.config import load_config
    from omicslake.session import build_session, stop_session

    modules = {
        "gwas": gwas,
        "ingest_vcf": ingest_vcf,
        "serve": serve,
        "ehr": ehr,
        "models": models,
        "omics": omics,
        "study": study,
    }
    info = {"machine": common.machine(), "versions": common.versions()}
    cfg = load_config("local", overrides=[f"lake.root={work / 'lake'}", *args.overrides])
    t = time.monotonic()
    spark = build_session(cfg)
    info["session_start_seconds"] = round(time.monotonic() - t, 2)
    table: list[tuple[str, str, str, float, float | None, float | None]] = []
    failed: list[str] = []  # a benchmark whose two sides computed different things
    skipped: set[tuple[str, str, str]] = set()
    try:
        for name in names:
            sizes = (
                [_size(s) for s in args.sizes.split(",")]
                if args.sizes
                else SIZES[name]["quick" if args.quick else "full"]
            )
            bad = [sz for sz in sizes if len(sz) != len(DIMS[name])]
            if bad:
                ap.error(f"{name} sizes are {' x '.join(DIMS[name])}; got {bad}")
            runs = []
            for size in sizes:
                label = " x ".join(f"{v:,}" for v in size)
                print(f"[bench] {name} {label} ...", file=sys.stderr, flush=True)
                extra = {"formats": tuple(args.formats.split(","))} if name == "omics" and args.formats else {}
                rec: dict[str, Any] = modules[name].run(spark, cfg, work, *size, peers=not args.no_peers, **extra)
                rec["size"] = dict(zip(DIMS[name], size, strict=True))
                runs.append(rec)
                failed += [f"{name} {label}: {c}" for c in rec.get("checks_failed", [])]
                for key, r in rec["ratios"].items():
                    ours_key, peer_key = _keys(name, key)
                    table.append((name, label, key, rec["seconds"][ours_key], rec["seconds"].get(peer_key), r))
                    if r is None and key.split("_vs_")[1].removesuffix("_process") in rec.get("peers_skipped", {}):
                        skipped.add((name, label, key))  # a peer skipped with its reason in the JSON
            if args.append and (out / f"{name}.json").exists():
                runs = merge_runs(json.loads((out / f"{name}.json").read_text())["runs"], runs)
            result = {"name": name, "quick": args.quick, **info, "runs": runs}
            summarize = getattr(modules[name], "summarize", None)
            if summarize is not None:
                result["summary"] = summarize(runs)
            (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    finally:
        stop_session(spark)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'benchmark':<11} {'size':<16} {'comparison':<44} {'ours s':>8} {'peer s':>8} {'ratio':>6}")
    for name, size, key, ours, peer, r in table:
        print(
            f"{name:<11} {size:<16} {key:<44} {ours:8.1f} {peer if peer is not None else float('nan'):8.1f} "
            f"{r if r is not None else float('nan'):6.2f}"
        )
    print(f"[bench] results in {out}", file=sys.stderr)
    if failed:
        print("[bench] the two sides disagree: " + "; ".join(failed), file=sys.stderr)
        return 1
    missing = [
        f"{name} {size} {key}" for name, size, key, _, _, r in table if r is None and (name, size, key) not in skipped
    ]
    if missing and not args.no_peers:
        print(f"[bench] no ratio for: {', '.join(missing)} (a peer did not run)", file=sys.stderr)
        return 1
    return 0


def merge_runs(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of an earlier result file with this run's added, a size measured again replaced by its new
    run, in order of size."""
    sizes = {tuple(r["size"].values()) for r in new}
    kept = [r for r in old if tuple(r["size"].values()) not in sizes]
    return sorted(kept + new, key=lambda r: tuple(r["size"].values()))


def _keys(name: str, ratio_key: str) -> tuple[str, str]:
    """The timing keys a ratio divides: 'ours_drop_vs_plink2' -> ('ours_drop', 'plink2')."""
    from bench.table import PEERS

    ours, peer = ratio_key.split("_vs_")
    return ours, PEERS[name][peer]


if __name__ == "__main__":
    sys.exit(main())
