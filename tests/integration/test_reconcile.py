"""conform_ehr's reconciliation is counted, not computed: a row silently dropped before or during
the write is caught, the job fails naming the table and the count, and the table is left as it
was. (The identity on real data is tests/integration/test_ehr.py's reconciliation test.)"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.ehr import silver
from omicslake.errors import ReconciliationError
from omicslake.io.delta import Lake
from omicslake.jobs import conform_ehr
from omicslake.jobs.base import execute


def _bronze_copy(ehr_lake: dict[str, Any], tmp_path: Path) -> Config:
    clean: Config = ehr_lake["cfg"]
    shutil.copytree(Path(clean.lake.root) / "bronze", tmp_path / "lake" / "bronze")
    return clean.replace(**{"lake.root": str(tmp_path / "lake")})


def test_a_row_dropped_after_the_checks_fails_before_anything_is_written(
    spark: SparkSession, ehr_lake: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _bronze_copy(ehr_lake, tmp_path)
    real = silver.check

    def dropping(df, contract, **kw):  # type: ignore[no-untyped-def]
        result = real(df, contract, **kw)
        if contract.table != "silver.person":
            return result
        return dataclasses.replace(result, kept=result.kept.where(F.col("_line") != 2))  # a filter slipped in

    monkeypatch.setattr(silver, "check", dropping)
    with pytest.raises(ReconciliationError) as err:
        execute(spark, cfg, "conform_ehr", run_id="drop1")
    m = re.search(
        r"silver\.person: rows lost or invented: (\d+) rows missing between the checks and the write", str(err.value)
    )
    assert m and int(m.group(1)) >= 1, str(err.value)
    assert "Nothing was written" in str(err.value)
    assert not Lake(spark, cfg).exists("silver.person")


def test_a_row_lost_in_the_write_fails_and_the_table_is_put_back(
    spark: SparkSession, ehr_lake: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _bronze_copy(ehr_lake, tmp_path)
    real = Lake.write

    def lossy(self, df, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "silver.person":
            df = df.where(F.col("_line") != 2)
        return real(self, df, name, *args, **kwargs)

    monkeypatch.setattr(Lake, "write", lossy)
    with pytest.raises(
        ReconciliationError,
        match=r"silver\.person: rows lost or invented: (\d+) rows kept but (\d+) rows with their "
        r"keys in silver\.person after the write.*silver\.person \(new\) emptied",
    ):
        execute(spark, cfg, "conform_ehr", run_id="lose1")
    monkeypatch.undo()
    assert Lake(spark, cfg).read("silver.person").count() == 0
    assert not Lake(spark, cfg).exists("silver.visit_occurrence")


def test_a_large_table_is_staged_once_reconciled_and_its_scratch_removed(
    spark: SparkSession, ehr_lake: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a 1,000,000-patient lake takes (jobs.conform_ehr.rows_per_partition low enough that the
    fact tables count as large): their built rows are de-duplicated in more partitions and staged as
    Parquet under the run's scratch folder, the reconciliation (counted from the written tables) holds,
    and no staged copy is left behind."""
    cfg = _bronze_copy(ehr_lake, tmp_path).replace(**{"jobs.conform_ehr.rows_per_partition": 5000})
    real = silver.conform
    staged: dict[str, int] = {}

    def spy(source, build, contract, run_id, **kw):  # type: ignore[no-untyped-def]
        stage = kw.pop("stage")

        def recorded(rows):  # type: ignore[no-untyped-def]
            staged[contract.table] = rows.rdd.getNumPartitions()
            return stage(rows)

        return real(source, build, contract, run_id, stage=recorded, **kw)

    monkeypatch.setattr(silver, "conform", spy)
    run = execute(spark, cfg, "conform_ehr", run_id="big1")
    assert run.status == "succeeded", run.metrics
    monkeypatch.undo()
    lake = Lake(spark, cfg)
    bronze = {
        "silver.measurement": "bronze.synthea_observations",
        "silver.visit_occurrence": "bronze.synthea_encounters",
    }
    floor = int(spark.conf.get("spark.sql.shuffle.partitions"))
    for table, source in bronze.items():
        n = lake.read(source).count()
        parts = -(-n // 5000)  # one partition per 5,000 bronze rows, when that is more than the floor
        assert staged.get(table) == (parts if parts > floor else None), (table, n, staged)
    assert "silver.measurement" in staged and "silver.person" not in staged, staged
    recon = lake.read("ops.dq_results").where("expectation = 'reconciliation' AND run_id = 'big1'")
    assert {r.table_name: r.outcome for r in recon.collect()}.keys() >= set(staged)
    assert {r.outcome for r in recon.collect()} == {"passed"}
    assert lake.read("silver.measurement").count() > 0
    left = (
        sorted(p.name for p in (tmp_path / "lake" / "_tmp").glob("conform_ehr-*"))
        if (tmp_path / "lake" / "_tmp").exists()
        else []
    )
    assert left == [], left


def test_record_policy_logs_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        conform_ehr._reconcile("person", ["3 rows missing"], "record", None, None)  # type: ignore[arg-type]  # noqa: SLF001
    assert "silver.person: rows lost or invented: 3 rows missing" in caplog.text
    with pytest.raises(ReconciliationError, match="3 rows missing. Nothing was written"):
        conform_ehr._reconcile("person", ["3 rows missing"], "fail", None, None)  # type: ignore[arg-type]  # noqa: SLF001
