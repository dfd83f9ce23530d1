"""The omicslake command: help text, errors, tables, pipeline plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.cli import main


@pytest.fixture()
def cfg(cfg: Config) -> Config:
    """Ad-hoc tables without contracts: this module tests the lake itself."""
    return cfg.replace(**{"lake.enforce_contracts": False})


def test_console_script_help() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "omicslake"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for word in ("run", "pipeline", "tables", "generate", "fetch-jars", "examples:"):
        assert word in out.stdout


@pytest.mark.parametrize("sub", ["run", "pipeline", "tables", "generate"])
def test_every_command_has_help_with_lake_options(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([sub, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--env", "--conf-file", "--set", "--run-id"):
        assert opt in text


def test_bad_override_exits_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tables", "--set", "lake.nope=1"]) == 2
    assert "unknown key 'lake.nope'" in capsys.readouterr().err


def test_tables_lists_the_lake(spark: SparkSession, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    Lake(spark, cfg, run_id="c").write(spark.range(4), "silver.listed", mode="append")
    assert main(["tables", "--set", f"lake.root={cfg.lake.root}"]) == 0
    out = capsys.readouterr().out
    assert "silver.listed" in out
    line = next(x for x in out.splitlines() if x.startswith("silver.listed"))
    assert line.split()[1:] == ["0", "4"]


def test_pipeline_dry_run_plans_in_dag_order(
    spark: SparkSession, cfg: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pipeline", "--dry-run", "--set", f"lake.root={cfg.lake.root}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["1.", "generate", "run", "no"]  # an empty lake: everything runs
    planned = [line.split()[1] for line in out]
    assert planned == [
        "generate",
        "ingest_ehr",
        "conform_ehr",
        "ingest_vcf",
        "genomic_qc",
        "genetic_features",
        "ingest_survey",
        "conform_survey",
        "psychometrics",
        "ingest_omics",
        "omics_qc",
        "build_cohort",
        "gwas",
        "train",
        "score",
        "cluster",
        "survival",
        "omics_assoc",
        "study",
        "report",
    ]
    assert main(["pipeline", "--dry-run", "--only", "nonsense"]) == 2
