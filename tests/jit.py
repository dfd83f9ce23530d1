"""Which JIT the JVMs of the test suite compile with.

``./dev test`` puts ``-XX:TieredStopAtLevel=1`` (C1 only) in JAVA_TOOL_OPTIONS: a JVM that lives
a minute on small data spends its time warming up, and C1 compiles sooner. A JVM that lives for
most of the run and plans thousands of queries pays C2's warm-up back, so in the whole suite
(``OMICSLAKE_TEST_DRIVER_JIT=full``, set by ``./dev test`` but not by ``--fast``) the long-lived ones
start without the flag: each pytest worker's own Spark driver (tests/conftest.py).

Measured on 2 cores, side by side: the EHR group (test_ehr, test_reconcile, test_ml, test_generate)
861 s with the full JIT against 1,160 s with C1 only; the whole-pipeline lake's spark-submit run
550 s against 720 s; the kill chain, whose pipeline processes live about 45 s each, 871 s against
752 s; the fast tier, whose drivers live 3 minutes, 215-226 s against 173 s. The whole suite took
2,472 s with the full JIT for the workers' drivers against 3,288 s. The pipeline lake stays on C1:
in the whole suite its full-JIT run took 715 s (695 s on C1) and the kill chain beside it 916 s
(798 s), 2,526 s in all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

C1_ONLY = "-XX:TieredStopAtLevel=1"
DRIVER_JIT_ENV = "OMICSLAKE_TEST_DRIVER_JIT"


def long_lived(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a long-lived JVM: without C1_ONLY in JAVA_TOOL_OPTIONS when the suite asks for the
    full JIT there (OMICSLAKE_TEST_DRIVER_JIT=full), else unchanged."""
    out = dict(env)
    opts = out.get("JAVA_TOOL_OPTIONS")
    if out.get(DRIVER_JIT_ENV) == "full" and opts is not None:
        out["JAVA_TOOL_OPTIONS"] = " ".join(o for o in opts.split() if o != C1_ONLY)
    return out


@contextmanager
def default_jit() -> Iterator[None]:
    """os.environ as ``long_lived`` makes it, for a JVM started inside the block (the worker's own
    Spark driver, which PySpark launches with the process's environment)."""
    old = os.environ.get("JAVA_TOOL_OPTIONS")
    new = long_lived(os.environ).get("JAVA_TOOL_OPTIONS")
    if new == old:
        yield
        return
    os.environ["JAVA_TOOL_OPTIONS"] = new  # type: ignore[assignment]
    try:
        yield
    finally:
        os.environ["JAVA_TOOL_OPTIONS"] = old  # type: ignore[assignment]


# Spark's own defaults for code generation, which tests/spark_conf turns off for the suite's small lakes
GENERATED_CODE = {"spark.sql.codegen.wholeStage": "true", "spark.sql.codegen.factoryMode": "FALLBACK"}


@contextmanager
def generated_code(spark: Any) -> Iterator[None]:
    """Spark's generated code for the queries run inside the block, on the session ``spark`` (both settings
    are the session's runtime SQL settings), then the session's settings back. For a big lake: compiling a
    query's code costs the same at any size, and at 20,000 patients running interpreted cost more (the
    oracle's lake, tests/integration/test_ml_oracle.py)."""
    old = {k: spark.conf.get(k, None) for k in GENERATED_CODE}
    for k, v in GENERATED_CODE.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
