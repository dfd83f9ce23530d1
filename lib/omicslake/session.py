"""One SparkSession carrying Delta Lake and Hail together (and MLflow's defaults).

Modes (``spark.mode`` in config):

- ``local``: ``local[N]`` on this machine; Delta's jars from the local cache (see jars.py).
- ``cluster``: spark-submit against a standalone/YARN/K8s master; the master comes from
  spark-submit, the jars are shipped with ``spark.jars`` like in local mode.
- ``databricks``: Delta is built in; nothing is added but Hail's wiring when Hail is installed
  on the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.jars import delta_jars, s3a_jars

log = logging.getLogger(__name__)

HAIL_KRYO = "is.hail.kryo.HailKryoRegistrator"
# the module Python workers start from in local mode (spark.python.daemon.module; lib/omicslake/pydaemon.py)
PYTHON_DAEMON = "omicslake.pydaemon"


def hail_jar() -> Path | None:
    """Path of the jar that ships inside the hail wheel, or None when hail is not installed."""
    try:
        import hail
    except ImportError:
        return None
    jar = Path(hail.__file__).parent / "backend" / "hail-all-spark.jar"
    return jar if jar.exists() else None


def spark_conf(cfg: Config) -> dict[str, str]:
    """The SparkConf entries for cfg (pure: no session is touched)."""
    layout = cfg.layout
    conf: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.ui.enabled": str(cfg.spark.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # One session runs the whole DAG (and a test suite): bound what it keeps of finished work.
        # Spark's status store keeps 1,000 jobs/stages/SQL executions even with the UI off, and
        # Delta keeps a DeltaLog (with its snapshot) for up to 10,000 tables. (What drove a 3 GB
        # test heap into GC thrash was cached DataFrames outliving their job, fixed in
        # jobs/base.execute; these bounds are the same care for the other things a session keeps.)
        # ContextCleaner frees shuffle/broadcast blocks only after a JVM GC, forced every 30 min by default.
        "spark.ui.retainedJobs": "100",
        "spark.ui.retainedStages": "200",
        "spark.ui.retainedTasks": "10000",
        "spark.sql.ui.retainedExecutions": "50",
        "spark.ui.dagGraph.retainedRootRDDs": "100",
        "spark.databricks.delta.delta.log.cacheSize": "50",
        "spark.cleaner.periodicGC.interval": "5min",
        # pandas <-> Spark through Arrow (toPandas, createDataFrame of a pandas frame), as Databricks does by
        # default on most clusters and Spark 4.2 will everywhere: the same conversions on every platform,
        # and no Python worker pickling rows (the unit tests' Python workers: 2.4 s of CPU against 13.5 s in
        # test_layout_independence). Types Arrow cannot carry fall back to the row path (Spark's default).
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    jars: list[str] = []
    if cfg.spark.mode != "databricks":
        conf["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
        conf["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        conf["spark.driver.memory"] = cfg.spark.driver_memory
        cache = Path(cfg.delta.jar_cache).expanduser() if cfg.delta.jar_cache else None
        jars += [str(p) for p in delta_jars(cfg.delta.version, cfg.delta.scala, cache, cfg.delta.maven_repo)]
        if layout.needs_s3a or cfg.lake.s3a_jars:
            jars += [str(p) for p in s3a_jars(cache=cache, repo=cfg.delta.maven_repo)]
        conf["spark.sql.warehouse.dir"] = layout.warehouse()
        # Derby (the embedded metastore's database) needs a local folder.
        conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={layout.local_scratch('_warehouse')}"
    conf.update(s3a_conf(cfg))
    if cfg.spark.mode == "local":
        # Local mode talks to itself only: bind to loopback.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        # Python workers (pandas UDFs) run the driver's interpreter, not whatever python3 is on PATH.
        conf["spark.pyspark.python"] = sys.executable
        # Python workers start from omicslake.pydaemon (PySpark's daemon without Spark's archives on the
        # path, its imports frozen out of the per-task gc.collect()): ~90 ms less per Python task here.
        # Local mode only: an executor elsewhere need not have omicslake installed when its daemon starts.
        conf["spark.python.daemon.module"] = PYTHON_DAEMON
    if cfg.hail.enabled:
        jar = hail_jar()
        if jar is not None:
            jars.insert(0, str(jar))
            conf["spark.serializer"] = "org.apache.spark.serializer.KryoSerializer"
            conf["spark.kryo.registrator"] = HAIL_KRYO
            if cfg.spark.mode != "databricks":
                conf["spark.driver.extraClassPath"] = str(jar)
                conf["spark.executor.extraClassPath"] = "./hail-all-spark.jar"
    if jars:
        conf["spark.jars"] = ",".join(jars)
    conf.update(cfg.spark.conf)
    return conf


def s3a_conf(cfg: Config) -> dict[str, str]:
    """Hadoop settings of the s3a connector: endpoint and addressing from config (or the standard
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL variables). Credentials are not set here: the connector's
    default chain reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) from the
    environment, or an instance profile, so no secret ends up in Spark's conf, UI or logs."""
    if not (cfg.layout.needs_s3a or cfg.lake.s3a_jars):
        return {}
    conf: dict[str, str] = {}
    endpoint = s3_endpoint(cfg)
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
        # Any region passes the SDK's checks against a non-AWS endpoint.
        conf["spark.hadoop.fs.s3a.endpoint.region"] = os.environ.get(
            "AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        )
    if cfg.lake.s3_path_style:
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return conf


def s3_endpoint(cfg: Config) -> str | None:
    """lake.s3_endpoint, else $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL, else None (AWS itself)."""
    return cfg.lake.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


# When set (tests/suite_cost.py sets it for a measured test run), every build_session, init_hail and
# stop_session in every process (pytest workers, the CLI and spark-submit drivers the tests start)
# appends one JSON line with its seconds to this file: what a run spends starting sessions.
SESSION_TIMES_ENV = "OMICSLAKE_SESSION_TIMES"


def _record_time(event: str, **fields: Any) -> None:
    path = os.environ.get(SESSION_TIMES_ENV)
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n"
    with open(path, "a", encoding="utf-8") as f:  # one short append per line: processes do not interleave
        f.write(line)


def build_session(cfg: Config, hail: bool = True) -> SparkSession:
    """The SparkSession for cfg, with Hail initialised on the same SparkContext (``hail=False``:
    not yet; ``init_hail`` does it later on the same context, as the job runner does before a job
    whose spec says it calls Hail). The session carries Hail's jar and Kryo settings either way.

    If a session is already active in this process (a test fixture, a notebook, Databricks),
    it is reused and only Hail is initialised on it (idempotently).
    """
    t0 = time.monotonic()
    active = SparkSession.getActiveSession()
    if active is not None:
        spark = active
    else:
        builder = SparkSession.builder.appName(cfg.spark.app_name)
        if cfg.spark.mode == "local" and cfg.spark.master:
            builder = builder.master(cfg.spark.master)
        elif cfg.spark.mode == "cluster" and cfg.spark.master and "SPARK_SUBMIT" not in os.environ:
            builder = builder.master(cfg.spark.master)
        conf = spark_conf(cfg)
        if "spark.pyspark.python" in conf:
            # PySpark's SparkContext reads the workers' interpreter from the environment.
            os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("WARN")
    import_jvm_classes(spark)
    _record_time("start", created=active is None, seconds=time.monotonic() - t0, argv=sys.argv[:3])
    if cfg.hail.enabled and hail:
        init_hail(spark, cfg)  # records its own seconds ("hail"), here or when the job runner calls it later
    return spark


# The JVM classes PySpark names by their simple name on every call (``F.col`` asks the gateway for
# ``functions``, then for its member, then calls it). py4j resolves a simple name by trying it without a
# package, then the view's single imports, then its star imports one by one; each miss searches the whole
# classpath (about 260 jars, many with an INDEX.LIST), and PySpark imports these through star imports six
# deep. A single import of the same class cuts the misses to one: ``F.col`` took 493 us instead of 821 us
# on this project's session, and the pipeline makes thousands of such calls per job. Each entry is the
# class the star imports found (tests/unit/test_session_settings.py).
JVM_SINGLE_IMPORTS = (
    "org.apache.spark.sql.functions",
    "org.apache.spark.sql.SparkSession",
    "org.apache.spark.sql.api.python.PythonSQLUtils",
    "org.apache.spark.api.python.PythonUtils",
    "org.apache.spark.api.python.PythonRDD",
    "org.apache.spark.api.python.SerDeUtil",
)


def import_jvm_classes(spark: SparkSession) -> None:
    """Single imports of ``JVM_SINGLE_IMPORTS`` into the gateway's JVM view (idempotent)."""
    from py4j.java_gateway import java_import

    jvm = spark.sparkContext._jvm  # noqa: SLF001
    if jvm is None:
        return
    for name in JVM_SINGLE_IMPORTS:
        java_import(jvm, name)


def init_hail(spark: SparkSession, cfg: Config) -> None:
    """hl.init on spark's context; a no-op when Hail is already up on it or not installed. Its seconds
    go to the session-times file (``SESSION_TIMES_ENV``) as a "hail" event."""
    t0 = time.monotonic()
    try:
        import hail as hl
    except ImportError:
        log.warning("hail is not installed; genomic jobs will not run")
        return
    layout = cfg.layout
    tmp_dir = cfg.hail.tmp_dir or layout.tmp("hail")
    # Hail's own scratch files and its log are local files (under the root when the root is local).
    local_tmp = tmp_dir if "://" not in tmp_dir else str(layout.local_scratch("_tmp", "hail"))
    log_dir = Path(cfg.hail.log_dir or layout.local_scratch("_logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Hail warns whenever it is handed a context, even one configured as it asks (above).
        warnings.filterwarnings("ignore", message="Hail requires additional configuration")
        hl.init(
            sc=spark.sparkContext,
            idempotent=True,
            quiet=True,
            tmp_dir=tmp_dir,
            local_tmpdir=local_tmp if cfg.spark.mode == "local" else None,
            log=str(log_dir / "hail.log"),
            global_seed=0,
        )
    hl.default_reference(cfg.hail.reference_genome)
    _hadoop_paths_for_hail()
    _record_time("hail", seconds=time.monotonic() - t0)


# URI schemes only the JVM's Hadoop FileSystem knows (the connector jars on Spark's class path).
_HADOOP_SCHEMES = ("s3a", "s3n", "abfs", "abfss", "wasb", "wasbs", "hdfs", "dbfs", "viewfs", "file")


def _hadoop_paths_for_hail() -> None:
    """Let Hail's Spark backend write to Hadoop URIs (s3a://, abfss://, hdfs://...).

    Hail 0.2.139 checks every output path on the Python side with its own async file systems
    (hailtop's router: gs://, s3:// through aiohttp, Azure https://) only to warn about cold GCS
    storage, and raises "no file system found for url" for any other scheme, although the write
    itself goes through the JVM's Hadoop FileSystem, which reads and writes them. The check is kept
    for every URI the router knows and skipped for the Hadoop-only schemes."""
    from hail.backend.spark_backend import SparkBackend

    original = SparkBackend.validate_file
    if getattr(original, "_omicslake", False):
        return

    def validate_file(self: Any, uri: str) -> None:
        if uri.split("://", 1)[0].lower() in _HADOOP_SCHEMES and "://" in uri:
            return
        original(self, uri)

    validate_file._omicslake = True  # type: ignore[attr-defined]
    SparkBackend.validate_file = validate_file  # type: ignore[method-assign]


def stop_session(spark: SparkSession) -> None:
    """Stop Hail when it is running, then Spark."""
    t0 = time.monotonic()
    try:
        _stop(spark)
    finally:
        _record_time("stop", seconds=time.monotonic() - t0)


def _stop(spark: SparkSession) -> None:
    try:
        import hail as hl
        from hail.utils.java import Env

        if Env._hc is not None:  # noqa: SLF001 - only way to ask whether Hail is initialised
            _close_hail_http_server_in_background(Env.backend())
            hl.stop()  # a context Hail was handed stays up: stopped below
    except ImportError:
        pass
    spark.stop()


def _close_hail_http_server_in_background(backend: Any) -> None:
    """Hail's stop closes its JVM-side HTTP server first, and on JDK 17 that close waits its full
    grace period whatever is in flight (10 s of every stop, in every process that started Hail; the
    JDK waits only for open exchanges from 21 on, JDK-8304065). Nothing is in flight when a job
    stops, so the close runs on a daemon thread and the rest of Hail's stop goes on without it."""
    import threading

    close = getattr(backend, "_stop_jhttp_server", None)
    if close is None:  # another Hail version: its own stop does what it does
        return
    threading.Thread(target=close, name="hail-http-close", daemon=True).start()
    backend._stop_jhttp_server = lambda: None  # noqa: SLF001
