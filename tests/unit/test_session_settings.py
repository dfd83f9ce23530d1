"""The session's settings: the single imports of JVM classes (session.JVM_SINGLE_IMPORTS), each the class
PySpark's star imports resolve the same simple name to, in place in the session; pandas frames through Arrow."""

from __future__ import annotations

from pyspark.sql import SparkSession

from omicslake.session import JVM_SINGLE_IMPORTS


def test_each_single_import_is_the_class_the_star_imports_find(spark: SparkSession) -> None:
    gateway = spark.sparkContext._gateway  # noqa: SLF001
    # a fresh view with PySpark's own imports only (pyspark/java_gateway.py: launch_gateway)
    view = gateway.new_jvm_view("star-imports-only")
    from py4j.java_gateway import java_import

    for name in (
        "org.apache.spark.SparkConf",
        "org.apache.spark.api.java.*",
        "org.apache.spark.api.python.*",
        "org.apache.spark.ml.python.*",
        "org.apache.spark.mllib.api.python.*",
        "org.apache.spark.resource.*",
        "org.apache.spark.sql.*",
        "org.apache.spark.sql.api.python.*",
        "org.apache.spark.sql.hive.*",
        "scala.Tuple2",
    ):
        java_import(view, name)
    for fqn in JVM_SINGLE_IMPORTS:
        simple = fqn.rsplit(".", 1)[1]
        assert getattr(view, simple)._fqn == fqn, simple  # noqa: SLF001


def test_the_session_view_has_the_single_imports(spark: SparkSession) -> None:
    # dir() of a py4j view lists the simple names of its single imports (PySpark's own: SparkConf, Tuple2)
    names = set(dir(spark.sparkContext._jvm))  # noqa: SLF001
    missing = [fqn for fqn in JVM_SINGLE_IMPORTS if fqn.rsplit(".", 1)[1] not in names]
    assert not missing, missing
    assert {"SparkConf", "Tuple2"} <= names  # the listing itself works


def test_pandas_frames_cross_through_arrow(spark: SparkSession) -> None:
    import pandas as pd

    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    # Arrow carries a pandas NaN as null (the row path kept it as NaN): what every platform now does
    df = spark.createDataFrame(pd.DataFrame({"x": [1.0, float("nan")]}))
    assert df.where("x IS NULL").count() == 1
