"""databricks.yml (the Asset Bundle) against the code: every task's entry point is a script in
pyproject.toml that points at an existing job's main, and the task graph is the pipeline DAG."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import yaml

from omicslake.jobs import DAG

REPO = Path(__file__).resolve().parents[2]


def test_bundle_tasks_mirror_the_dag_and_entry_points_exist() -> None:
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    job = bundle["resources"]["jobs"]["omicslake_pipeline"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    graph = {k: tuple(sorted(d["task_key"] for d in t.get("depends_on", []))) for k, t in tasks.items()}
    assert graph == {k: tuple(sorted(v)) for k, v in DAG.items()}
    for key, t in tasks.items():
        wheel = t["python_wheel_task"]
        assert wheel["package_name"] == "omicslake"
        target = scripts[wheel["entry_point"]]
        module, func = target.split(":")
        assert module == f"omicslake.jobs.{key}" and func == "main"
        if importlib.util.find_spec(module) is not None:
            assert callable(getattr(importlib.import_module(module), func))
        assert wheel["parameters"][:2] == ["--env", "databricks"]
        assert t["job_cluster_key"] in {c["job_cluster_key"] for c in job["job_clusters"]}
    runtime = job["job_clusters"][0]["new_cluster"]["spark_version"]
    assert runtime.startswith(("15.4.", "16.4.")), runtime  # LTS runtimes with Spark 3.5
    conf = yaml.safe_load((REPO / "conf" / "databricks.yaml").read_text())
    assert conf["spark"]["mode"] == "databricks" and "packages" not in str(conf.get("spark", {}))
    assert set(conf["lake"]["schemas"]) >= {"bronze", "silver", "gold", "quarantine", "ops"}
