"""DataFrame helpers shared by the domain packages.

``canonical`` gives a frame a layout that depends on its rows alone. The same rows can reach a
job in other files and partitions (a rerun after a crash, a compacted table, a lake copied to
another store), and Spark's seeded sampling draws per partition (cross-validation's random
folds, k-means' initialisation), while percentiles and floating-point sums follow the row order:
on a canonical frame they give the same answer for the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

ROWS_PER_PARTITION = 500_000


def approx_quantiles(
    df: DataFrame, columns: Sequence[str], probabilities: Sequence[float], relative_error: float
) -> list[list[float]]:
    """``df.approxQuantile(columns, probabilities, relative_error)``: per column its quantiles (an empty
    list for a column with no value), from the same JVM method, read back as one string.

    PySpark reads the Java lists that method returns with py4j iterators, and each ends on a Java
    exception that PySpark converts through a dozen class lookups (about 15 ms each): a second or more
    of every train, which takes the deciles of ~150 features. py4j itself carries a double as Java's
    ``Double.toString``, which is what the list's text holds, so the numbers are the same doubles."""
    if not columns:
        return []
    jvm = df.sparkSession.sparkContext._jvm  # noqa: SLF001
    assert jvm is not None
    stat = df._jdf.stat()  # noqa: SLF001
    lists = stat.approxQuantile(
        jvm.PythonUtils.toList([str(c) for c in columns]),
        jvm.PythonUtils.toList([float(p) for p in probabilities]),
        float(relative_error),
    )
    return [[float(v) for v in q] for q in json.loads(lists.toString())]  # NaN, Infinity: json reads them


def session_partitions(spark: SparkSession) -> int:
    """The session's spark.sql.shuffle.partitions (Spark's default, 200, when unset)."""
    return int(spark.conf.get("spark.sql.shuffle.partitions") or 200)


def canonical(
    df: DataFrame, by: Sequence[str] = (), partitions: int | None = None, rows_per_partition: int = ROWS_PER_PARTITION
) -> DataFrame:
    """The rows of ``df`` hash-partitioned on ``by`` (default: every column) and sorted within each
    partition by ``by`` and then every other column (rows that tie on all of them are equal, so
    their order cannot matter). One shuffle; an explicit partition count, which adaptive execution
    leaves as it is.

    ``partitions`` defaults to one per ``rows_per_partition`` rows of df (one count). Up to that
    size a fit on the frame is reproducible to the bit; past it, which rows share a partition and in
    what order is still fixed, but MLlib adds up the partitions' partial sums in the order their
    tasks finish, so results agree to rounding only."""
    cols = list(by) or list(df.columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"canonical: no column {missing} in {df.columns}")
    if rows_per_partition < 1:
        raise ValueError(f"canonical: rows_per_partition must be >= 1, got {rows_per_partition}")
    n = partitions if partitions is not None else max(1, -(-df.count() // rows_per_partition))
    if n < 1:
        raise ValueError(f"canonical: partitions must be >= 1, got {n}")
    order = cols + [c for c in df.columns if c not in cols]
    return df.repartition(n, *cols).sortWithinPartitions(*order)
