"""frames.approx_quantiles: the same doubles as DataFrame.approxQuantile, without the Java exception
PySpark converts at the end of every list it reads back."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import SparkSession

from omicslake.frames import approx_quantiles


def _hard(spark: SparkSession):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    n = 600
    cols = {
        "normal": rng.normal(size=n),
        "thirds": np.arange(n) / 3.0,  # long decimal expansions
        "tiny": rng.uniform(size=n) * 5e-324 * 1000,  # subnormals
        "huge": rng.uniform(-1, 1, size=n) * 1.7e308,
        "signed_zero": np.where(np.arange(n) % 2 == 0, -0.0, 0.0),
        "ints": rng.integers(-5, 5, size=n).astype(float),
        "with_nan": np.where(np.arange(n) % 7 == 0, np.nan, rng.normal(size=n)),  # NaN is left out
        "infinite": np.where(np.arange(n) % 11 == 0, np.inf, np.where(np.arange(n) % 13 == 0, -np.inf, 1.5)),
    }
    rows = [(*[float(c[i]) for c in cols.values()], None if i % 5 == 0 else float(i), None) for i in range(n)]
    names = [*cols, "some_null", "all_null"]
    return spark.createDataFrame(rows, ", ".join(f"{c} double" for c in names)), names


@pytest.mark.parametrize("relative_error", [0.0, 1e-3, 0.05])
def test_the_same_doubles_as_approx_quantile(spark: SparkSession, relative_error: float) -> None:
    df, names = _hard(spark)
    probs = [0.0, 0.1, 1 / 3, 0.5, 0.9, 1.0]
    want = df.approxQuantile(names, probs, relative_error)
    got = approx_quantiles(df, names, probs, relative_error)
    # repr: -0.0 and 0.0 differ, and NaN equals NaN
    assert [[repr(v) for v in q] for q in got] == [[repr(v) for v in q] for q in want]
    assert got[names.index("all_null")] == []
    assert got[names.index("infinite")][0] == -np.inf and got[names.index("infinite")][-1] == np.inf
    assert approx_quantiles(df, [], probs, relative_error) == []


def test_no_java_exception_is_converted(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyspark.errors.exceptions.captured as captured

    seen: list[str] = []
    convert = captured.convert_exception

    def counting(e):  # type: ignore[no-untyped-def]
        seen.append("x")
        return convert(e)

    monkeypatch.setattr(captured, "convert_exception", counting)
    df, names = _hard(spark)
    approx_quantiles(df, names, [0.25, 0.5], 1e-3)
    assert seen == []
    df.approxQuantile(names, [0.25, 0.5], 1e-3)  # why the helper exists: one per list and one for the outer
    assert len(seen) == len(names) + 1
