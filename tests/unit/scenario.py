"""Scenario folders (tests/data/<feature>/<case>/): hand-made CSV inputs and expected outputs.

A CSV is read with the explicit schema the test gives (never inferred); an empty field is null.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

DATA = Path(__file__).resolve().parents[1] / "data"


def folder(feature: str, case: str) -> Path:
    return DATA / feature / case


def read_csv(spark: SparkSession, path: Path, schema: str) -> DataFrame:
    """The CSV at path with the given DDL schema (header line required, empty field = null)."""
    return spark.read.csv(str(path), header=True, schema=schema, enforceSchema=False, mode="FAILFAST")
