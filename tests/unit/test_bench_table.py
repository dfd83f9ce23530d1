"""The README's performance table is what bench/results/*.json generate (python -m bench.table),
and the generator reads every ratio of a hand-made result file."""

from __future__ import annotations

import json
from pathlib import Path

from bench.table import BEGIN, END, PAGES, block, render


def test_readme_and_docs_bench_blocks_equal_what_the_results_generate() -> None:
    for page, compact in PAGES.items():
        text = page.read_text()
        assert text.count(BEGIN) == 1 and text.count(END) == 1, page
        assert render(text, block(compact=compact)) == text, (
            f"{page.name}'s benchmark table is stale: run python -m bench.table"
        )


def test_block_has_a_line_per_ratio_with_both_times(tmp_path: Path) -> None:
    run = {
        "size": {"variants": 20000, "samples": 2000},
        "ratios": {"ours_drop_vs_plink2": 2.5, "ours_drop_vs_hail": 0.4},
        "seconds": {"ours_drop": 50.0, "plink2": 20.0, "hail_logistic_regression_rows": 125.0},
    }
    data = {
        "name": "gwas",
        "machine": {"cores": 2, "memory_gib": 23.4, "load_average_at_start": [3.1, 2, 1]},
        "runs": [run],
    }
    (tmp_path / "gwas.json").write_text(json.dumps(data))
    text = block(tmp_path)
    assert (
        "| gwas | 20,000 variants x 2,000 samples | omicslake gwas (missing=drop) | plink2 --glm --threads 2 | 50.0 | 20.0 | 2.50 |"
        in text
    )
    assert "| Hail logistic_regression_rows | 50.0 | 125.0 | 0.40 |" in text
    assert render(f"a\n{BEGIN}\nold\n{END}\nb", "new") == f"a\n{BEGIN}\nnew\n{END}\nb"


def test_ehr_block_shows_its_ingest_conform_ratios_growth_and_agreement(tmp_path: Path) -> None:
    def run(patients: int, ours: float, duck: float) -> dict[str, object]:
        seconds = {"ingest_conform": ours, "conform_ehr": ours / 2, "duckdb": duck}
        ratios = {"ingest_conform_vs_duckdb": round(ours / duck, 3), "conform_ehr_vs_duckdb": round(ours / 2 / duck, 3)}
        jobs = {
            "conform_ehr": {
                "wall_seconds": ours,
                "job_seconds": ours / 2,
                "rows_per_second": 1234.5,
                "peak_rss_gib": patients / 10_000,
            }
        }
        return {"size": {"patients": patients}, "seconds": seconds, "ratios": ratios, "jobs": jobs}

    data = {
        "name": "ehr",
        "machine": {"cores": 2, "memory_gib": 23.4, "load_average_at_start": [0.1, 0, 0]},
        "runs": [run(10_000, 100.0, 10.0), run(100_000, 400.0, 100.0)],
        "summary": {
            "sizes": [10_000, 100_000],
            "growth_per_10x": {"ingest_ehr": [3.0], "conform_ehr": [5.0], "build_cohort": [None], "duckdb": [10.0]},
            "spark_overtakes_duckdb_at": None,
            "silver_counts_agree": True,
        },
    }
    (tmp_path / "ehr.json").write_text(json.dumps(data))
    text = block(tmp_path)
    assert (
        "| ehr | 100,000 patients | omicslake ingest_ehr + conform_ehr | DuckDB conform script | 400.0 | 100.0 | 4.00 |"
        in text
    )
    assert "conform_ehr_vs_duckdb" not in text and "| omicslake conform_ehr |" not in text  # JSON only
    assert "(10,000 -> 100,000): ingest_ehr 3.0x, conform_ehr 5.0x, build_cohort -, duckdb 10.0x;" in text
    assert "overtakes DuckDB at no size measured; silver row counts of both sides agree at every size." in text
    # per job and size: the job's seconds (the basis of rows/s, not the process's wall time), rows/s and the
    # process tree's peak memory (driver and JVM)
    assert (
        "- ehr, 100,000 patients: conform_ehr 200 s, 1,234 rows/s, peak 10.0 GiB (the job's own seconds, rows "
        "written per second of them; peak memory of the process tree: driver and JVM)." in text
    )


def test_omics_block_the_readme_shows_the_largest_size_and_the_docs_every_size_with_memory(tmp_path: Path) -> None:
    def run(genes: int, ours: float, pandas: float, mem: float) -> dict[str, object]:
        return {
            "size": {"genes": genes, "samples": 5000},
            "seconds": {"ours_tsv": ours, "pandas": pandas},
            "ratios": {"ours_tsv_vs_pandas": round(ours / pandas, 3), "ours_tsv_processes_vs_pandas_process": 9.0},
            "peak_rss_gib": {"ours_tsv": 2.0, "pandas": mem},
            "cpu_seconds": {"ours_tsv": 300.0, "pandas": 40.0},
        }

    data = {
        "name": "omics",
        "machine": {"cores": 2, "memory_gib": 23.4, "load_average_at_start": [9.0, 2, 1]},
        "runs": [run(5000, 100.0, 20.0, 0.5), run(20000, 200.0, 80.0, 2.0)],
        "summary": {"cells_growth": 4.0, "peak_memory_growth": {"ours_tsv": 1.0, "pandas": 4.0}},
    }
    (tmp_path / "omics.json").write_text(json.dumps(data))
    row = "| omics | 20,000 genes x 5,000 samples | omicslake ingest_omics + omics_qc, TSV.gz | pandas.read_csv + numpy | 200.0 | 80.0 | 2.50 |"
    full, compact = block(tmp_path), block(tmp_path, compact=True)
    assert row in full
    # the README's compact table: the headline ratio only (README_SHOWN), without the ours column
    assert "| omics | 20,000 genes x 5,000 samples | pandas.read_csv + numpy | 200.0 | 80.0 | 2.50 |" in compact
    assert "| 5,000 genes" in full and "| 5,000 genes" not in compact
    assert "processes" not in full  # the process ratios stay in the JSON
    assert (
        "- omics, 5,000 genes x 5,000 samples: peak memory GiB (process tree) ours (TSV.gz) 2.00, pandas 0.50; "
        "CPU seconds ours (TSV.gz) 300, pandas 40." in full
    )
    assert "- omics: 4x the cells, peak memory grew: ours (TSV.gz) 1.00x, pandas 4.00x." in full
    assert "peak memory" not in compact and "[docs/benchmarks.md](docs/benchmarks.md)" in compact


def test_study_block_shows_time_and_memory_of_both_jobs_and_how_the_lake_was_made(tmp_path: Path) -> None:
    def run(patients: int, copies: int) -> dict[str, object]:
        jobs = {
            "build_cohort": {"wall_seconds": 60.4, "peak_rss_gib": 3.14},
            "study": {"wall_seconds": 900.0, "peak_rss_gib": 7.56},
        }
        inputs = {"generated_patients": patients // copies, **({"copies": copies} if copies > 1 else {})}
        return {
            "size": {"patients": patients},
            "inputs": inputs,
            "study": {"persons": 870_000},
            "jobs": jobs,
            "ratios": {},
        }

    data = {
        "name": "study",
        "machine": {"cores": 2, "memory_gib": 23.4, "load_average_at_start": [0.1, 0, 0]},
        "runs": [run(20_000, 1), run(1_000_000, 50)],
    }
    (tmp_path / "study.json").write_text(json.dumps(data))
    text = block(tmp_path)
    assert (
        "- study, 1,000,000 patients (50 copies of a generated 20,000; 870,000 persons in the study): build_cohort 60 s, "
        "peak memory 3.1 GiB; study 900 s, peak memory 7.6 GiB" in text
    )
    assert "- study, 20,000 patients (generated;" in text


def _result(name: str, *runs: dict[str, object]) -> dict[str, object]:
    """A result file of one benchmark as bench.run writes it (a quiet 2-core machine)."""
    machine = {"cores": 2, "memory_gib": 23.4, "load_average_at_start": [1.0, 1, 1]}
    return {"name": name, "machine": machine, "runs": list(runs)}


def test_gwas_and_ingest_notes_show_our_stage_times_and_the_agreement_with_plink2(tmp_path: Path) -> None:
    gwas = _result(
        "gwas",
        {
            "size": {"variants": 20000, "samples": 5000},
            "seconds": {"ours_drop": 58.5, "plink2": 6.4},
            "ratios": {"ours_drop_vs_plink2": 9.14},
            "ours": {"ours_drop": {"stages": {"genotypes": 29.7, "fit_and_write": 22.8}}},
            "agreement_with_plink2": {
                "compared": 19604,
                "max_abs_d_beta": 0.00027,
                "max_abs_d_log10_p": 0.02,
                "plink2_fitted_we_did_not": 0,
                "n_differs": 3,
                "wald_firth_choice_differs": 0,
                "within_bars": False,
            },
        },
    )
    ingest = _result(
        "ingest_vcf",
        {
            "size": {"variants": 20000, "samples": 2000},
            "seconds": {"ours": 40.0, "hail_import_vcf_write": 12.0},
            "ratios": {"ours_vs_hail": 3.33},
            "ours": {
                "stages": {"text_pass": 14.0, "hail_import_to_bronze": 20.5},
                "stages_text_checks_off": {"text_pass": 0.0, "hail_import_to_bronze": 19.0},
            },
        },
    )
    (tmp_path / "gwas.json").write_text(json.dumps(gwas))
    (tmp_path / "ingest_vcf.json").write_text(json.dumps(ingest))
    text = block(tmp_path)
    assert (
        "- gwas, 20,000 variants x 5,000 samples: our stages (missing=drop) genotypes 29.7 s, fit and write 22.8 s; "
        "against plink2 on 19,604 variants both fitted: max |d beta| 2.7e-04, max |d log10 p| 2.0e-02, "
        "0 fitted by plink2 only, n differs on 3, Wald/Firth choice on 0: OUTSIDE the bars."
    ) in text
    assert (
        "- ingest_vcf, 20,000 variants x 2,000 samples: our stages text pass 14.0 s, hail import to bronze 20.5 s."
        in text
    )
