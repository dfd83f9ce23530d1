"""The performance tables, generated from ``bench/results/*.json`` (never typed): every ratio of every
size with its notes in docs/benchmarks.md, and in the README (under 10 KB, tests/unit/test_readme.py)
the largest size of each benchmark only.

python -m bench.table            # rewrite the blocks between the markers in README.md and docs/benchmarks.md
python -m bench.table --check    # exit 1 if a block is not what the JSON gives
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN bench -->", "<!-- END bench -->"
# ratio key -> timing key of the peer, per benchmark
PEERS = {
    "gwas": {"plink2": "plink2", "hail": "hail_logistic_regression_rows"},
    "ingest_vcf": {"hail": "hail_import_vcf_write", "bcftools": "bcftools_view_Ou"},
    "serve": {"inprocess": "inprocess_batch"},
    "ehr": {"duckdb": "duckdb", "duckdb_process": "duckdb_process"},
    "models": {"sklearn_logistic": "sklearn_logistic", "sklearn_hist_gbt": "sklearn_hist_gbt", "lightgbm": "lightgbm"},
    "omics": {
        "pandas": "pandas",
        "pandas_process": "pandas_process",
        "anndata": "anndata",
        "anndata_process": "anndata_process",
    },
}
LABELS = {
    "gwas": {
        "ours_drop": "omicslake gwas (missing=drop)",
        "ours_mean": "omicslake gwas (missing=mean, Hail)",
        "plink2": "plink2 --glm --threads 2",
        "hail": "Hail logistic_regression_rows",
    },
    "ingest_vcf": {
        "ours": "omicslake ingest_vcf",
        "ours_text_checks_off": "omicslake ingest_vcf (text_checks off)",
        "hail": "Hail import_vcf().write()",
        "bcftools": "bcftools view -Ou",
    },
    "serve": {
        "served_batch": "omicslake serve: a batch over HTTP",
        "inprocess": "the same batch in-process",
    },
    "ehr": {
        "ingest_conform": "omicslake ingest_ehr + conform_ehr",
        "conform_ehr": "omicslake conform_ehr",
        "ingest_conform_processes": "ingest_ehr + conform_ehr, processes (with Spark start)",
        "duckdb": "DuckDB conform script",
        "duckdb_process": "DuckDB conform script, process",
    },
    "models": {
        "mllib_logistic": "MLlib LogisticRegression fit (train job pipeline)",
        "mllib_gbt": "MLlib GBTClassifier fit (train job pipeline)",
        "sklearn_logistic": "scikit-learn LogisticRegression",
        "sklearn_hist_gbt": "scikit-learn HistGradientBoosting",
        "lightgbm": "LightGBM",
    },
    "omics": {
        "ours_tsv": "omicslake ingest_omics + omics_qc, TSV.gz",
        "ours_h5ad": "omicslake ingest_omics + omics_qc, h5ad",
        "ours_tsv_processes": "ingest_omics + omics_qc processes, TSV.gz",
        "ours_h5ad_processes": "ingest_omics + omics_qc processes, h5ad",
        "pandas": "pandas.read_csv + numpy",
        "anndata": "anndata.read_h5ad + numpy",
        "pandas_process": "pandas.read_csv + numpy, process",
        "anndata_process": "anndata.read_h5ad + numpy, process",
    },
}

SHORT = {"ours_tsv": "ours (TSV.gz)", "ours_h5ad": "ours (h5ad)"}  # sides named in the omics notes

# The ratios a benchmark shows in docs/benchmarks.md when its JSON has more (e.g. the process-level
# ones); every ratio is in its JSON.
SHOWN = {
    "ehr": ("ingest_conform_vs_duckdb", "ingest_conform_processes_vs_duckdb_process"),
    "omics": ("ours_tsv_vs_pandas", "ours_h5ad_vs_anndata"),
}
# The README's compact table (it must stay under 10 KB, tests/unit/test_readme.py): one rule for every
# benchmark, our default path against each peer tool once (GWAS: missing=drop; models: logistic against
# scikit-learn, GBT against LightGBM, the fastest GBT peer); docs/benchmarks.md has every ratio of every size
README_SHOWN = {
    "gwas": ("ours_drop_vs_plink2", "ours_drop_vs_hail"),
    "ingest_vcf": ("ours_vs_hail", "ours_vs_bcftools"),
    "models": ("mllib_logistic_vs_sklearn_logistic", "mllib_gbt_vs_lightgbm"),
    "ehr": ("ingest_conform_vs_duckdb",),
    "omics": ("ours_tsv_vs_pandas", "ours_h5ad_vs_anndata"),
}


def size_text(size: dict[str, int]) -> str:
    """A run's size in words: ``20,000 variants x 2,000 samples``."""
    return " x ".join(f"{v:,} {k}" for k, v in size.items())


def stage_text(stages: dict[str, float]) -> str:
    """A job's stage times in words: ``genotypes 29.7 s, fit and write 22.8 s``."""
    return ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in stages.items())


def notes(data: dict[str, Any]) -> list[str]:
    """The lines under the table a result file adds besides its ratios: our job's stage times (gwas,
    with its agreement with plink2; ingest_vcf), held-out AUROC of each model (models), growth per 10x
    data, the size where Spark overtakes DuckDB and whether both sides' silver row counts agree (ehr),
    time and peak memory of build_cohort and the study (study), the share of the test suite spent
    starting sessions (suite_cost)."""
    name = data["name"]
    out = []
    if name == "models":
        for run in data["runs"]:
            aucs = ", ".join(f"{LABELS['models'].get(k, k).split(' fit')[0]} {v:.3f}" for k, v in run["auroc"].items())
            out.append(f"- models, {size_text(run['size'])}: held-out AUROC {aucs}.")
    elif name == "ehr":
        if "summary" in data:
            s = data["summary"]
            growth = ", ".join(
                f"{job} {'/'.join('-' if g is None else f'{g:.1f}x' for g in s['growth_per_10x'][job])}"
                for job in ("ingest_ehr", "conform_ehr", "build_cohort", "duckdb")
                if job in s["growth_per_10x"]
            )
            at = s["spark_overtakes_duckdb_at"]
            sizes = " -> ".join(f"{n:,}" for n in s["sizes"])
            out.append(
                "- ehr: "
                + (f"time growth per 10x patients ({sizes}): {growth}; " if len(s["sizes"]) > 1 else "")
                + f"Spark's ingest + conform overtakes DuckDB {'at ' + format(at, ',') + ' patients' if at else 'at no size measured'}; "
                f"silver row counts of both sides {'agree' if s['silver_counts_agree'] else 'DIFFER'} at every size."
            )
        for run in data["runs"]:
            jobs = run.get("jobs") or {}
            each = "; ".join(
                f"{job} {j['job_seconds']:.0f} s, {j['rows_per_second']:,.0f} rows/s, peak {j['peak_rss_gib']:.1f} GiB"
                for job, j in jobs.items()
                if {"job_seconds", "rows_per_second", "peak_rss_gib"} <= set(j)
            )
            if each:
                out.append(
                    f"- ehr, {size_text(run['size'])}: {each} (the job's own seconds, rows written per second of "
                    "them; peak memory of the process tree: driver and JVM)."
                )
    elif name == "gwas":
        for run in data["runs"]:
            stages = run.get("ours", {}).get("ours_drop", {}).get("stages") or {}
            a = run.get("agreement_with_plink2") or {}
            where = stage_text(stages)
            agree = "within" if a.get("within_bars") else "OUTSIDE"
            out.append(
                f"- gwas, {size_text(run['size'])}: our stages (missing=drop) {where or 'not recorded'}"
                + (
                    f"; against plink2 on {a['compared']:,} variants both fitted: max |d beta| "
                    f"{a['max_abs_d_beta']:.1e}, max |d log10 p| {a['max_abs_d_log10_p']:.1e}, "
                    f"{a.get('plink2_fitted_we_did_not', 0)} fitted by plink2 only, n differs on {a.get('n_differs', 0)}, "
                    f"Wald/Firth choice on {a.get('wald_firth_choice_differs', 0)}: {agree} the bars"
                    if a.get("compared")
                    else ""
                )
                + "."
            )
    elif name == "ingest_vcf":
        for run in data["runs"]:
            for key, label in (("stages", ""), ("stages_text_checks_off", " with text_checks off")):
                stages = run.get("ours", {}).get(key) or {}
                where = stage_text(stages)
                if where:
                    out.append(f"- ingest_vcf, {size_text(run['size'])}: our stages{label} {where}.")
    elif name == "omics":
        for run in data["runs"]:
            mem = ", ".join(f"{SHORT.get(k, k)} {v:.2f}" for k, v in run["peak_rss_gib"].items())
            cpu = ", ".join(f"{SHORT.get(k, k)} {v:.0f}" for k, v in run.get("cpu_seconds", {}).items())
            out.append(
                f"- omics, {size_text(run['size'])}: peak memory GiB (process tree) {mem}"
                + (f"; CPU seconds {cpu}" if cpu else "")
                + "."
            )
        g = data.get("summary", {})
        if g.get("cells_growth"):
            grown = ", ".join(
                f"{SHORT.get(k, k)} {'-' if v is None else f'{v:.2f}x'}" for k, v in g["peak_memory_growth"].items()
            )
            out.append(f"- omics: {g['cells_growth']:.0f}x the cells, peak memory grew: {grown}.")
    elif name == "study":
        for run in data["runs"]:
            inp, st, jobs = run["inputs"], run["study"], run["jobs"]
            how = (
                f"{inp['copies']} copies of a generated {inp['generated_patients']:,}"
                if inp.get("copies")
                else "generated"
            )
            out.append(
                f"- study, {size_text(run['size'])} ({how}; {st['persons']:,} persons in the study): "
                + "; ".join(
                    f"{job} {jobs[job]['wall_seconds']:.0f} s, peak memory {jobs[job]['peak_rss_gib']:.1f} GiB"
                    for job in ("build_cohort", "study")
                )
                + " (process tree; no peer: OHDSI CohortMethod does not run here)."
            )
    elif name == "suite_cost":
        out.append(
            f"- suite cost: {data['session_start_seconds']:.0f} s of {data['suite_seconds']:.0f} s "
            f"({data['share_of_worker_time']:.1%} of worker time, {data['sessions_started']} sessions started, "
            f"{data['workers']} workers; target < 5 %) on `{data['args']}`."
        )
    return out


def block(results: Path = ROOT / "bench" / "results", compact: bool = False) -> str:
    """The Markdown between the markers: one line per ratio of every run of every result file (those of
    ``SHOWN``), the notes and the machines; ``compact`` (the README): the largest size of each benchmark,
    the ratios of ``README_SHOWN``, no ours column and no notes."""
    lines = (
        [  # compact (the README): what ours is follows from the benchmark and its peer
            "| benchmark | size | peer | ours (s) | peer (s) | ratio |",
            "|---|---|---|---:|---:|---:|",
        ]
        if compact
        else [
            "| benchmark | size | ours | peer | ours (s) | peer (s) | ratio |",
            "|---|---|---|---|---:|---:|---:|",
        ]
    )
    machines, extra = [], []
    files = sorted(results.glob("*.json"))
    if not files:  # the --quick smoke writes under results/quick/, which the README never shows
        return (
            "No full benchmark run is committed yet: `./dev bench` writes `bench/results/*.json`, then "
            "`python -m bench.table` fills this table."
        )
    for path in files:
        data = json.loads(path.read_text())
        name = data["name"]
        m = data["machine"]
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        machines.append(
            f"`{shown}`: {m['cores']} cores, {m['memory_gib']} GiB, load {m['load_average_at_start'][0]} at start"
        )
        extra += notes(data)
        runs = data.get("runs", [])
        for run in runs[-1:] if compact else runs:
            size = size_text(run["size"])
            for key, r in run["ratios"].items():
                shown_keys = README_SHOWN if compact else SHOWN
                if name in shown_keys and key not in shown_keys[name]:
                    continue
                ours, peer = key.split("_vs_")
                peer_s = run["seconds"].get(PEERS[name][peer])
                if r is None or peer_s is None:
                    continue
                label = "" if compact else f" {LABELS[name][ours]} |"
                lines.append(
                    f"| {name} | {size} |{label} {LABELS[name][peer]} | "
                    f"{run['seconds'][ours]:.1f} | {peer_s:.1f} | {r:.2f} |"
                )
    lines.append("")
    if compact:
        lines.append(
            "Ratio = our wall time / the peer's, same run, same file. Every size, memory and notes: "
            "[docs/benchmarks.md](docs/benchmarks.md)."
        )
        return "\n".join(lines)
    lines += extra + ([""] if extra else [])
    lines.append(
        "Ratio = our wall time / the peer's, measured in the same run on the same file (below 1: ours is "
        "faster). Generated by `python -m bench.table` from " + "; ".join(machines) + "."
    )
    return "\n".join(lines)


def render(readme: str, text: str) -> str:
    """A page's text with the block between the markers replaced by ``text``."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"no {BEGIN} ... {END} markers in the page")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{text}\n{END}{tail}"


PAGES = {ROOT / "README.md": True, ROOT / "docs" / "benchmarks.md": False}  # page -> compact


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if a page's block is out of date")
    args = ap.parse_args(argv)
    stale = []
    for page, compact in PAGES.items():
        old = page.read_text()
        new = render(old, block(compact=compact))
        if new != old:
            stale.append(page.name)
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print(
            f"{', '.join(stale)}: the benchmark table differs from bench/results/*.json: run python -m bench.table",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
