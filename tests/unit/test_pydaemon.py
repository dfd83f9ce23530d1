"""The Python workers' daemon (omicslake.pydaemon): which archives leave the workers' path, and that the
session's workers start from it (no zip importer of Spark's archives, the daemon's imports frozen)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from pyspark.sql import SparkSession

from omicslake import pydaemon
from omicslake.pydaemon import archive_modules, trim_path
from omicslake.session import PYTHON_DAEMON


def _zip(path: Path, entries: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in entries.items():
            z.writestr(name, text)
    return str(path)


def test_archives_whose_modules_are_in_a_folder_leave_the_path(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "shared").mkdir(parents=True)
    (site / "shared" / "__init__.py").write_text("")
    (site / "single.py").write_text("")
    jar = _zip(tmp_path / "core.jar", {"META-INF/MANIFEST.MF": "", "org/x/A.class": ""})  # no Python at all
    dup = _zip(tmp_path / "dup.zip", {"shared/__init__.py": "", "shared/sub/m.py": "", "single.py": ""})
    # one module found nowhere else
    own = _zip(tmp_path / "own.zip", {"shared/__init__.py": "", "only_here/__init__.py": ""})
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    missing = str(tmp_path / "absent.zip")  # not a file: left as it is, like any folder entry
    assert archive_modules(jar) == set()
    assert archive_modules(dup) == {"shared", "single"}
    assert archive_modules(own) == {"shared", "only_here"}
    path = [str(tmp_path / "cwd"), jar, dup, own, str(broken), missing, str(site)]
    assert trim_path(path) == [str(tmp_path / "cwd"), own, str(broken), missing, str(site)]
    # without the folder, the duplicated modules are found nowhere else: the zip stays
    assert trim_path([jar, dup]) == [dup]


def test_the_sessions_python_workers_start_from_the_daemon(spark: SparkSession) -> None:
    def probe(_rows: object) -> object:
        import gc
        import sys

        import pyspark

        zips = [k for k, v in sys.path_importer_cache.items() if type(v).__name__ == "zipimporter"]
        archives = [p for p in sys.path if p.endswith((".zip", ".jar")) and "pyspark" in p]
        yield (zips, archives, gc.get_freeze_count(), pyspark.__file__)

    for zips, archives, frozen, where in spark.sparkContext.parallelize([0, 1], 2).mapPartitions(probe).collect():
        assert zips == [] and archives == [], (zips, archives)
        assert frozen > 1000, frozen  # PySpark's modules, imported before the fork
        assert ".zip" not in where, where  # PySpark from the installed package, not from pyspark.zip
    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == PYTHON_DAEMON == pydaemon.__name__
