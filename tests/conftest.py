"""Shared fixtures: one Spark session for the whole run (local[2], Delta and Hail on it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from omicslake.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "data" / "external"


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="session")
def base_cfg(session_root: Path) -> Config:
    return load_config(
        "local",
        overrides=[
            f"lake.root={session_root}",
            "spark.shuffle_partitions=2",
            "spark.driver_memory=3g",
            "spark.ui=false",
        ],
    )


@pytest.fixture(scope="session")
def spark(base_cfg: Config) -> Iterator[SparkSession]:
    from omicslake.session import build_session, stop_session

    session = build_session(base_cfg)
    yield session
    stop_session(session)


@pytest.fixture()
def cfg(base_cfg: Config, tmp_path: Path) -> Config:
    """The session's config with a lake of the test's own."""
    return base_cfg.replace(**{"lake.root": str(tmp_path / "lake")})


@pytest.fixture(scope="session")
def external() -> Path:
    if not EXTERNAL.is_dir():
        pytest.skip(f"shared external data not found at {EXTERNAL}")
    return EXTERNAL
