"""The suite's own machinery: under xdist (./dev test) every test carries its group in its node id,
so the modules that share an expensive session fixture run on one worker (tests/conftest.py). With
pytest 9.2 and xdist 3.8 the group silently did not apply (pytest keeps node ids elsewhere) and both
workers built the whole-pipeline lake."""

from __future__ import annotations

import os

import pytest


def test_xdist_groups_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process (OMICSLAKE_TEST_WORKERS=0): no groups to check
    assert request.node.nodeid.endswith("@test_suite_setup"), request.node.nodeid


def _tiered_stop(jvm) -> int:  # type: ignore[no-untyped-def]
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    return int(bean.getVMOption("TieredStopAtLevel").getValue())


def test_the_tests_own_driver_has_the_full_jit_and_the_jvms_they_start_keep_c1(spark) -> None:  # type: ignore[no-untyped-def]
    """./dev test puts C1-only in JAVA_TOOL_OPTIONS for the short JVMs the tests start; in the whole
    suite (OMICSLAKE_TEST_DRIVER_JIT=full) the worker's own driver, which lives for the whole run, is
    started without it (tests/jit.py); the fast tier's keeps it."""
    import subprocess

    from jit import C1_ONLY, DRIVER_JIT_ENV

    c1 = C1_ONLY in os.environ.get("JAVA_TOOL_OPTIONS", "").split()
    full = os.environ.get(DRIVER_JIT_ENV) == "full" or not c1
    assert _tiered_stop(spark._jvm) == (4 if full else 1)  # 4: the default, C1 then C2
    if not c1:
        return  # not under ./dev test: nothing else to check
    out = subprocess.run(
        ["java", "-XX:+PrintFlagsFinal", "-version"], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if " TieredStopAtLevel " in x)
    assert line.split("=")[1].split()[0] == "1", line  # a JVM a test starts still compiles with C1 only


def test_only_the_whole_suite_strips_c1_for_long_lived_jvms() -> None:
    from jit import C1_ONLY, DRIVER_JIT_ENV, long_lived

    env = {"JAVA_TOOL_OPTIONS": f"-Xss4m {C1_ONLY} -XX:ReservedCodeCacheSize=240m", "PATH": "/bin"}
    assert long_lived(env) == env  # the fast tier, a developer's pytest: unchanged
    full = long_lived({**env, DRIVER_JIT_ENV: "full"})
    assert full["JAVA_TOOL_OPTIONS"] == "-Xss4m -XX:ReservedCodeCacheSize=240m" and full["PATH"] == "/bin"
    assert long_lived({DRIVER_JIT_ENV: "full"}) == {DRIVER_JIT_ENV: "full"}  # no options: none added


def test_the_jvms_keep_their_scratch_under_the_sessions_temporary_folder(spark, jvm_scratch) -> None:  # type: ignore[no-untyped-def]
    """The worker's driver and a JVM a test starts have java.io.tmpdir, and so Spark's block-manager
    folders, under the session's scratch (conftest.jvm_scratch), which pytest rotates: a JVM the kill
    chain SIGKILLs cannot remove them itself."""
    import subprocess

    jvm = spark._jvm
    assert jvm.java.lang.System.getProperty("java.io.tmpdir") == str(jvm_scratch)
    dirs = [str(d.getPath()) for d in jvm.org.apache.spark.SparkEnv.get().blockManager().diskBlockManager().localDirs()]
    assert dirs and all(d.startswith(f"{jvm_scratch}/blockmgr-") for d in dirs), dirs
    props = subprocess.run(
        ["java", "-XshowSettings:properties", "-version"], capture_output=True, text=True, check=True
    ).stderr
    assert f"java.io.tmpdir = {jvm_scratch}" in props  # a JVM a test starts inherits it


def test_the_suites_jvms_interpret_expressions_and_the_pipeline_lake_keeps_sparks_defaults(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """./dev test points SPARK_CONF_DIR at tests/spark_conf: the worker's driver (and every JVM a test
    starts) evaluates expressions without generated code; the whole-pipeline lake's cluster run is started
    without it, with Spark's defaults as on a cluster."""
    from pathlib import Path

    from pipeline_lake import _env

    assert "SPARK_CONF_DIR" not in _env(tmp_path)
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if conf_dir is None:
        return  # not under ./dev test (or OMICSLAKE_TEST_CODEGEN=1)
    assert Path(conf_dir) == Path(__file__).resolve().parents[1] / "spark_conf"
    assert spark.conf.get("spark.sql.codegen.wholeStage") == "false"
    assert spark.conf.get("spark.sql.codegen.factoryMode") == "NO_CODEGEN"


def test_generated_code_for_a_big_lake_and_the_sessions_settings_after(spark) -> None:  # type: ignore[no-untyped-def]
    """jit.generated_code: a query planned inside the block is compiled whole-stage (its operators carry
    Spark's ``*(n)`` mark), and the session's own settings are back after it, even after an error."""
    from jit import GENERATED_CODE, generated_code

    def compiled() -> bool:
        plan = spark.range(5).selectExpr("id + 1 AS x")._jdf.queryExecution().executedPlan().toString()
        return "*(" in plan

    before = {k: spark.conf.get(k, None) for k in GENERATED_CODE}
    with pytest.raises(RuntimeError), generated_code(spark):
        assert compiled()
        assert {k: spark.conf.get(k) for k in GENERATED_CODE} == GENERATED_CODE
        raise RuntimeError("a failing step")
    assert {k: spark.conf.get(k, None) for k in GENERATED_CODE} == before
    if os.environ.get("SPARK_CONF_DIR"):  # under ./dev test: the suite's interpreted expressions again
        assert not compiled()
