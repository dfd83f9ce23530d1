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
