"""The job specs are the one declaration of a job: the DAG, the CLI, the console scripts, the
spark-submit scripts and the Databricks bundle all agree with them, and each job declares the
config it reads."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest
import tomllib
import yaml

from omicslake.config import Config, JobsConfig
from omicslake.jobs import dag, pipeline_jobs, specs
from omicslake.jobs.cli import build_parser
from omicslake.jobs.registry import stale_files
from omicslake.jobs.spec import config_value

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_files_equal_what_the_specs_give() -> None:
    assert stale_files(REPO) == [], "run `python -m omicslake.jobs.registry` and commit the result"


def test_bundle_tasks_are_the_dag_and_every_entry_point_is_a_jobs_main() -> None:
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    job = bundle["resources"]["jobs"]["omicslake_pipeline"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    pipeline = set(pipeline_jobs())
    assert {k: tuple(d["task_key"] for d in t.get("depends_on", [])) for k, t in tasks.items()} == {
        k: v for k, v in dag().items() if k in pipeline
    }
    # the jobs outside the pipeline (maintain) are the tasks of the maintenance job, on the same cluster
    maint = bundle["resources"]["jobs"]["omicslake_maintenance"]
    assert [t["task_key"] for t in maint["tasks"]] == [k for k in specs() if k not in pipeline] != []
    assert maint["job_clusters"] == job["job_clusters"] and maint["max_concurrent_runs"] == 1
    for key, t in {**tasks, **{t["task_key"]: t for t in maint["tasks"]}}.items():
        wheel = t["python_wheel_task"]
        assert wheel["package_name"] == "omicslake"
        module, func = scripts[wheel["entry_point"]].split(":")
        assert module == f"omicslake.jobs.{key}" and func == "main"
        assert callable(getattr(importlib.import_module(module), func))  # a missing module fails here
        assert wheel["parameters"][:2] == ["--env", "databricks"]
        assert t["job_cluster_key"] in {c["job_cluster_key"] for c in job["job_clusters"]}
    runtime = job["job_clusters"][0]["new_cluster"]["spark_version"]
    assert runtime.startswith(("15.4.", "16.4.")), runtime  # LTS runtimes with Spark 3.5
    conf = yaml.safe_load((REPO / "conf" / "databricks.yaml").read_text())
    assert conf["spark"]["mode"] == "databricks" and "packages" not in str(conf.get("spark", {}))
    assert set(conf["lake"]["schemas"]) >= {"bronze", "silver", "gold", "quarantine", "ops"}


def _strays(pyproject: str, bundle: str) -> list[str]:
    """Console scripts and bundle tasks, anywhere in the two files (not only in their generated
    blocks), that are not a job of the specs or the CLI."""
    scripts = tomllib.loads(pyproject)["project"]["scripts"]
    want = {"omicslake": "omicslake.jobs.cli:main", **{s.script: f"{s.module}:main" for s in specs().values()}}
    out = [f"script {k} = {v}" for k, v in scripts.items() if want.get(k) != v]
    out += [f"script {k} missing" for k in want if k not in scripts]
    for name, job in yaml.safe_load(bundle)["resources"]["jobs"].items():
        for t in job.get("tasks", []):
            entry = t.get("python_wheel_task", {}).get("entry_point")
            if t["task_key"] not in specs() or entry != specs()[t["task_key"]].script:
                out.append(f"bundle job {name}: task {t['task_key']} ({entry})")
    return out


def test_no_script_or_bundle_task_outside_the_generated_blocks_names_another_job() -> None:
    pyproject, bundle = (REPO / "pyproject.toml").read_text(), (REPO / "databricks.yml").read_text()
    assert _strays(pyproject, bundle) == []
    # a retired job's console script left above the generated block, and a bundle job of its own
    # that runs it: what the block comparison of stale_files cannot see
    retired = pyproject.replace(
        "[project.scripts]\n", '[project.scripts]\nomicslake-retired = "omicslake.jobs.retired:main"\n'
    )
    extra = yaml.safe_load(bundle)
    extra["resources"]["jobs"]["omicslake_extra"] = {
        "tasks": [{"task_key": "retired", "python_wheel_task": {"entry_point": "omicslake-retired"}}]
    }
    assert _strays(retired, yaml.safe_dump(extra)) == [
        "script omicslake-retired = omicslake.jobs.retired:main",
        "bundle job omicslake_extra: task retired (omicslake-retired)",
    ]


def test_a_bundle_task_for_a_job_that_does_not_exist_is_caught(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for name in ("pyproject.toml", "databricks.yml", "docs/configuration.md"):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / "jobs").mkdir()
    for p in (REPO / "jobs").glob("*.py"):
        (tmp_path / "jobs" / p.name).write_text(p.read_text())
    bundle = tmp_path / "databricks.yml"
    bundle.write_text(bundle.read_text().replace("entry_point: omicslake-report", "entry_point: omicslake-rep"))
    (tmp_path / "jobs" / "retired_job.py").write_text("")
    assert sorted(p.name for p in stale_files(tmp_path)) == ["databricks.yml", "retired_job.py"]


def test_the_configuration_reference_is_current_and_covers_every_key() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    assert "| `jobs.conform_ehr.on_mismatch` | `Literal['fail', 'record']` | `\"fail\"` |" in text
    for f in dataclasses.fields(JobsConfig):
        assert f"## `jobs.{f.name}`" in text


def test_cli_offers_exactly_the_jobs_of_the_specs() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    run = sub.choices["run"]
    choices = next(a for a in run._actions if a.dest == "job").choices  # noqa: SLF001
    assert list(choices) == list(specs())


def test_dag_order_respects_dependencies() -> None:
    order = list(specs())
    for name, after in dag().items():
        assert all(order.index(d) < order.index(name) for d in after), name
    assert order[0] == "generate" and pipeline_jobs()[-1] == "report"
    assert order[: len(pipeline_jobs())] == pipeline_jobs()  # the jobs outside the pipeline come last


def test_every_declared_config_path_exists_and_every_job_section_has_a_job() -> None:
    cfg = Config()
    for s in specs().values():
        for path in s.config:
            config_value(cfg, path)  # raises ConfigError for a path that is not a config key
    sections = {f.name for f in dataclasses.fields(JobsConfig)}
    assert sections <= set(specs()), sections - set(specs())


_READ = re.compile(r"cfg\.((?:jobs\.[a-z_]+(?:\.[a-z_]+)?)|hail\.[a-z_]+|mlflow)")


@pytest.mark.parametrize("name", list(specs()))
def test_a_job_module_reads_only_the_config_its_spec_declares(name: str) -> None:
    """Static guard: every cfg.jobs.<x>[.<y>], cfg.hail.<y> and cfg.mlflow in the module's source is
    covered by a declared path (helpers it calls are declared by hand in the spec)."""
    s = specs()[name]
    source = Path(importlib.import_module(s.module).__file__).read_text()  # type: ignore[arg-type]
    used = set(_READ.findall(source))
    undeclared = sorted(u for u in used if not any(u == d or u.startswith(d + ".") for d in s.config))
    assert undeclared == [], f"{s.module} reads {undeclared} but SPEC.config is {s.config}"


def test_no_job_imports_another_job() -> None:
    """A job's module orchestrates IO; what two jobs share lives in the domain packages."""
    import ast

    jobs = set(specs())
    found = []
    for name in sorted(jobs):
        path = REPO / "lib" / "omicslake" / "jobs" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            mods = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for m in mods:
                parts = m.split(".")
                if parts[:2] == ["omicslake", "jobs"] and len(parts) > 2 and parts[2] in jobs and parts[2] != name:
                    found.append(f"{name} imports {m}")
    assert found == []


# the domain packages and modules (tests/unit/test_docstrings.py's), less the IO edge: io/ and the
# session, the pipeline's skip decisions and ml/tracking.py, the one MLflow helper, which points MLflow at
# the configured store
DOMAIN = ("ehr", "genomics", "features", "ml", "report", "survey", "omics", "causal", "synth")
IO_EDGE = {Path("ml/tracking.py")}


def _parameters(path: Path) -> list[tuple[str, str, str]]:
    """(function, parameter, annotation) of every function and method defined in the file."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                out.append((node.name, arg.arg, ast.unparse(arg.annotation) if arg.annotation else ""))
    return out


def test_domain_functions_take_parameters_not_the_config_or_a_read_callback() -> None:
    """#20: a domain function takes DataFrames and parameters (a job's own config section at most), never
    the whole Config, and never a ``read`` callback into the lake; the job at the IO edge resolves both."""
    lib = REPO / "lib" / "omicslake"
    found = []
    for pkg in DOMAIN:
        for path in sorted((lib / pkg).rglob("*.py")):
            if path.relative_to(lib) in IO_EDGE:
                continue
            for fn, arg, ann in _parameters(path):
                if arg in ("cfg", "config", "read") or re.search(r"\bConfig\b", ann):
                    found.append(f"{path.relative_to(lib)}: {fn}({arg}: {ann or '?'})")
    assert found == []
