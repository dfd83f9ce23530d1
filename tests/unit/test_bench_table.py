"""The README's performance table is what bench/results/*.json generate (python -m bench.table),
and the generator reads every ratio of a hand-made result file."""

from __future__ import annotations

import json
from pathlib import Path

from bench.table import BEGIN, END, ROOT, block, render


def test_readme_bench_block_equals_what_the_results_generate() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    assert render(readme, block()) == readme, "README.md's benchmark table is stale: run python -m bench.table"


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
        return {"size": {"patients": patients}, "seconds": seconds, "ratios": ratios}

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
