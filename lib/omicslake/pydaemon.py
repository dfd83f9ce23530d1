"""PySpark's Python worker daemon, started without the archives Spark puts ahead of the workers' path.

Spark starts its daemon (``python -m pyspark.daemon``) with PYTHONPATH = ``$SPARK_HOME/python/lib/
pyspark.zip``, the py4j zip and the spark-core jar before anything else, so every worker imports
PySpark from the zip. Before each task a worker calls ``importlib.invalidate_caches()``, and on
Python 3.11 that makes every zip importer on the path read its archive's directory again: one
importer per package PySpark imports from pyspark.zip (793 entries each time) and the spark-core jar
(5,221 entries, no Python in it). After each task the daemon runs ``gc.collect()`` in the worker,
which walks every object imported before the fork (PySpark, pandas, pyarrow: about 34,000).
Together that was most of the ~120 ms a one-row Python task took here.

``spark.python.daemon.module`` (SPARK-22959, the hook sentry-python and coverage use) names this
module instead; ``session.spark_conf`` sets it in local mode, where the workers run the driver's own
interpreter. It leaves out of ``sys.path`` every archive whose Python modules are all importable from a
folder on the rest of the path (the jar, which has none; pyspark.zip and py4j's zip when the
installed packages are there), forgets the importers Python made for them while it looked for this
module, freezes what is imported so far out of the collector (``gc.freeze``), then runs PySpark's
daemon unchanged. On a cluster whose executors do not have omicslake installed the setting must stay
off: an executor could not start its daemon.
"""

from __future__ import annotations

import gc
import os
import sys
import zipfile
from importlib.machinery import PathFinder


def archive_modules(archive: str) -> set[str]:
    """The top-level Python modules and packages inside a zip or jar (empty for one without Python)."""
    names = set()
    with zipfile.ZipFile(archive) as z:
        for entry in z.namelist():
            if entry.endswith((".py", ".pyc")):
                first = entry.split("/", 1)[0]
                names.add(first.rsplit(".", 1)[0] if "/" not in entry else first)
    return names


def trim_path(path: list[str]) -> list[str]:
    """``path`` without the archives (zip, jar, egg files) whose Python modules are all found in a folder
    on the path; an archive that cannot be read, or holds a module found nowhere else, stays."""
    folders = [p for p in path if not os.path.isfile(p)]
    kept = []
    for p in path:
        if os.path.isfile(p) and p.endswith((".zip", ".jar", ".egg")):
            try:
                modules = archive_modules(p)
            except (OSError, zipfile.BadZipFile):
                modules = None
            if modules is not None and all(PathFinder.find_spec(m, folders) is not None for m in modules):
                continue
        kept.append(p)
    return kept


def main() -> None:
    """Trim the path, forget the importers of what was dropped, import PySpark's daemon, freeze the
    imported objects out of the collector, serve."""
    kept = trim_path(sys.path)
    dropped = [p for p in sys.path if p not in kept]
    sys.path[:] = kept
    for key in list(sys.path_importer_cache):
        if any(key == p or key.startswith(p + os.sep) for p in dropped):
            del sys.path_importer_cache[key]
    from pyspark import daemon

    gc.freeze()
    daemon.manager()


if __name__ == "__main__":
    main()
