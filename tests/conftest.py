"""Shared fixtures: one Spark session for the whole run (local[2], Delta and Hail on it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from jit import default_jit
from omicslake.config import Config, load_config
from omicslake.synth.people import REFERENCE_DATE
from pipeline_lake import pipeline  # noqa: F401  (the session's whole-pipeline lake, a fixture)
from small_lake import small_clean_lake  # noqa: F401  (the session's small clean lake, a fixture)

REPO = Path(__file__).resolve().parents[1]
# the real inputs others wrote; OMICSLAKE_EXTERNAL_DATA points there from a checkout elsewhere (a worktree)
EXTERNAL = Path(os.environ.get("OMICSLAKE_EXTERNAL_DATA") or REPO.parent / "shared" / "data" / "external")


def pytest_configure(config: pytest.Config) -> None:
    """OMICSLAKE_SUITE_COST=1 (or =<file>.json): measure the share of the run spent starting Spark
    sessions (tests/suite_cost.py)."""
    target = os.environ.get("OMICSLAKE_SUITE_COST")
    if target and target != "0":
        from suite_cost import SuiteCost

        config.pluginmanager.register(SuiteCost(config, target), "omicslake_suite_cost")


@pytest.fixture(scope="session", autouse=True)
def jvm_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every JVM the session starts (its Spark driver, the pipelines it runs as processes, the
    standalone cluster) keeps its scratch under the session's temporary folder, which pytest
    rotates, instead of /tmp: java.io.tmpdir, where the native libraries of snappy and lz4 are
    unpacked and, with no spark.local.dir set, Spark's block-manager folders go. A JVM the kill
    chain SIGKILLs never removes its own, and each whole run used to leave about 50 MB in /tmp."""
    scratch = tmp_path_factory.mktemp("jvm_scratch")
    with pytest.MonkeyPatch.context() as mp:
        opts = os.environ.get("JAVA_TOOL_OPTIONS", "")
        mp.setenv("JAVA_TOOL_OPTIONS", f"{opts} -Djava.io.tmpdir={scratch}".strip())
        yield scratch


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
            f"spark.driver_memory={os.environ.get('OMICSLAKE_TEST_DRIVER_MEMORY', '6g')}",
            "spark.ui=false",
            # ages are top-coded at 90 as of the reference date (default: today), so a lake conformed on
            # another day can hold other ages and fit other models (test_ml's AFT concordance moved past its
            # tolerance between 2026-12-07 and 2026-12-08): the synthetic world's own today instead
            f"jobs.conform_ehr.reference_date={REFERENCE_DATE}",
        ],
    )


@pytest.fixture(scope="session")
def spark(base_cfg: Config) -> Iterator[SparkSession]:
    from omicslake.session import build_session, stop_session

    # Hail starts when a job whose spec calls it runs (jobs.base.execute), or for a test that calls Hail
    # itself (the ``hail`` fixture): the unit layer never needs it
    with default_jit():
        session = build_session(base_cfg, hail=False)
    yield session
    stop_session(session)


@pytest.fixture()
def hail(spark: SparkSession, base_cfg: Config) -> SparkSession:
    """The session with Hail initialised on it, for a test that calls Hail directly."""
    from omicslake.session import init_hail

    init_hail(spark, base_cfg)
    return spark


@pytest.fixture()
def cfg(base_cfg: Config, tmp_path: Path) -> Config:
    """The session's config with a lake of the test's own."""
    return base_cfg.replace(**{"lake.root": str(tmp_path / "lake")})


MESSY_PATIENTS, MESSY_SAMPLES, MESSY_VARIANTS = 1500, 120, 500


def generate_cli(root: Path, out: Path, seed: int, *extra: str) -> dict[str, Any]:
    from omicslake.jobs.cli import main

    args = ["generate", "--out", str(out), "--seed", str(seed), "--set", f"lake.root={root}", *extra]
    assert main(args) == 0
    return json.loads((out / "manifest.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def messy(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One messy generated cohort for the session (generator tests and EHR tests read it)."""
    root = tmp_path_factory.mktemp("gen")
    out = root / "messy"
    m = generate_cli(
        root,
        out,
        11,
        "--patients",
        str(MESSY_PATIENTS),
        "--samples",
        str(MESSY_SAMPLES),
        "--variants",
        str(MESSY_VARIANTS),
        "--messy",
    )
    return out, m


@pytest.fixture(scope="session", autouse=True)
def pseudonym_key() -> Iterator[str]:
    """The HMAC key for the test session, from the environment as in production.

    A test value, not a secret, and the same in every session: the patient-level train/test split
    is a hash of person_key, so a random key moved the held-out patients (and every held-out metric)
    from one run of the suite to the next."""
    import hashlib

    key = hashlib.sha256(b"omicslake test-suite pseudonym key").hexdigest()
    old = os.environ.get("OMICSLAKE_PSEUDONYM_KEY")
    os.environ["OMICSLAKE_PSEUDONYM_KEY"] = key
    yield key
    if old is None:
        os.environ.pop("OMICSLAKE_PSEUDONYM_KEY", None)
    else:
        os.environ["OMICSLAKE_PSEUDONYM_KEY"] = old


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a reference tool (plink2, bcftools, chromium...). Missing: the test skips on a
    developer's machine and fails under CI, where ./dev test has installed it."""
    import shutil

    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (./dev test installs it)"
        if under_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def external() -> Path:
    if not EXTERNAL.is_dir():
        msg = f"shared external data not found at {EXTERNAL}"
        if under_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return EXTERNAL


# Parallel runs (pytest-xdist: `./dev test` runs two workers, --dist loadgroup --no-loadscope-reorder): a session
# fixture is built once per worker, so the modules that share an expensive one run on the same
# worker, and every other module stays whole on one worker (its module fixtures built once). The
# groups are handed out in this order, longest first, so that the two workers finish together.
XDIST_GROUPS = {
    # the small clean lake (tests/small_lake.py) of the kill chain and the object store; long: started first
    "small_lake": ("test_kill_anywhere", "test_object_store"),
    "pipeline": (
        "test_cluster",
        "test_incremental",
        "test_secrets_and_phi",
        "test_study",
    ),  # the spark-submit pipeline lake
    "ehr": ("test_ehr", "test_reconcile", "test_ml", "test_generate"),  # messy -> ehr_lake -> gold_lake
    "oracle": ("test_ml_oracle",),  # 20,000 generated patients to a trained model
}


def _group(item: pytest.Item) -> str:
    module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else item.nodeid
    return next((g for g, mods in XDIST_GROUPS.items() if module in mods), module)


# tryfirst: xdist's own collection hook turns the xdist_group marks into node ids, so the marks must be
# there before it runs (without this, both workers built the pipeline lake)
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its xdist group (harmless without xdist) and order the groups so that
    the big ones start first; the order of tests within a module is kept."""
    order = {g: i for i, g in enumerate(XDIST_GROUPS)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    first_seen = {}
    for i, item in enumerate(items):
        first_seen.setdefault(_group(item), i)
    items.sort(key=lambda it: (order.get(_group(it), len(order)), first_seen[_group(it)]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (CI=true) no test may skip: a skip there means a missing oracle, tool or data
    folder that ./dev test should have provided, and a green run would hide it."""
    outcome = yield
    report = outcome.get_result()
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {report.longrepr}"


EHR_SILVER = (
    "person",
    "death",
    "visit_occurrence",
    "condition_occurrence",
    "measurement",
    "drug_exposure",
    "procedure_occurrence",
    "sample_link",
)


@pytest.fixture(scope="session")
def ehr_lake(
    spark: SparkSession, base_cfg: Config, messy: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Batch 1 lands and is conformed; then batch 2 (late corrections, a drifted column) arrives."""
    from omicslake.io.delta import Lake
    from omicslake.jobs.base import execute

    landing, manifest = messy
    root = tmp_path_factory.mktemp("ehr")
    cfg = base_cfg.replace(**{"lake.root": str(root), "jobs.generate.out": str(landing)})
    first = cfg.replace(**{"jobs.ingest_ehr.synthea_dir": str(landing / "synthea" / "batch_001")})
    runs = {
        "ingest1": execute(spark, first, "ingest_ehr", run_id="r1"),
        "conform1": execute(spark, cfg, "conform_ehr", run_id="r1"),
    }
    lake = Lake(spark, cfg)
    runs["versions1"] = {t: lake.version(f"silver.{t}") for t in EHR_SILVER}
    runs["ingest2"] = execute(spark, cfg, "ingest_ehr", run_id="r2")
    runs["conform2"] = execute(spark, cfg, "conform_ehr", run_id="r2")
    return {"cfg": cfg, "landing": landing, "manifest": manifest, **runs}


@pytest.fixture(scope="session")
def gold_lake(spark: SparkSession, ehr_lake: dict[str, Any]) -> Config:
    """The messy EHR lake with gold cohorts, features and Table 1 (build_cohort run once)."""
    from omicslake.jobs.base import execute

    cfg: Config = ehr_lake["cfg"]
    run = execute(spark, cfg, "build_cohort", run_id="b1")
    assert run.status == "succeeded", run.metrics
    return cfg
