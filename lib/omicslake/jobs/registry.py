"""What the job specs imply for the files outside the package, and a command that writes them.

From ``omicslake.jobs.specs()`` come: the console scripts of pyproject.toml (one per job, the
Databricks wheel entry points), the spark-submit scripts ``jobs/<job>.py``, and the tasks of the
Databricks bundle (``databricks.yml``); and, from the config classes, docs/configuration.md. ``python -m omicslake.jobs.registry`` rewrites them
after a job is added or its dependencies change; ``--check`` only says what differs (and exits 1),
which is what tests/unit/test_registry.py asserts never happens.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from omicslake import config_doc
from omicslake.jobs import specs
from omicslake.jobs.spec import JobSpec

SCRIPTS_BEGIN = "# BEGIN job entry points (generated from the job specs: python -m omicslake.jobs.registry)"
SCRIPTS_END = "# END job entry points"
TASKS_BEGIN = "      # BEGIN tasks (generated from the job specs: python -m omicslake.jobs.registry)"
TASKS_END = "      # END tasks"
MAINT_BEGIN = "      # BEGIN maintenance tasks (generated from the job specs: python -m omicslake.jobs.registry)"
MAINT_END = "      # END maintenance tasks"
_PARAMS = '["--env", "databricks", "--run-id", "{{job.run_id}}", "--set", "lake.catalog={{job.parameters.catalog}}"]'


def console_scripts() -> dict[str, str]:
    """script name -> entry point, one per job."""
    return {s.script: f"{s.module}:main" for s in specs().values()}


def submit_script(spec: JobSpec) -> str:
    """The text of jobs/<job>.py, the spark-submit entry of one job."""
    return (
        f'"""spark-submit entry: omicslake job {spec.name}."""\n\n'
        "import sys\n\n"
        f"from {spec.module} import main\n\n"
        "sys.exit(main())\n"
    )


def scripts_block() -> str:
    lines = [SCRIPTS_BEGIN] + [f'{k} = "{v}"' for k, v in console_scripts().items()] + [SCRIPTS_END]
    return "\n".join(lines) + "\n"


def tasks_block(pipeline: bool = True) -> str:
    """The bundle's tasks: of the pipeline job (the jobs in the pipeline), or of the maintenance job
    (the jobs outside it, e.g. maintain)."""
    begin, end = (TASKS_BEGIN, TASKS_END) if pipeline else (MAINT_BEGIN, MAINT_END)
    out = [begin, "      tasks:"]
    for s in specs().values():
        if s.pipeline != pipeline:
            continue
        out.append(f"        - task_key: {s.name}")
        if s.after:
            out.append("          depends_on:")
            out += [f"            - task_key: {d}" for d in s.after]
        out += [
            "          job_cluster_key: omicslake",
            "          python_wheel_task:",
            "            package_name: omicslake",
            f"            entry_point: {s.script}",
            f"            parameters: {_PARAMS}",
            "          libraries:",
            "            - whl: ./dist/*.whl",
        ]
    out.append(end)
    return "\n".join(out) + "\n"


def _replace_block(text: str, begin: str, end: str, block: str, where: str) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where}: no generated block between {begin!r} and {end!r}")
    return pattern.sub(lambda _: block, text, count=1)


def expected_files(repo: Path) -> dict[Path, str]:
    """Every file the specs decide, with the text it must have."""
    out = {repo / "jobs" / f"{s.name}.py": submit_script(s) for s in specs().values()}
    pyproject = repo / "pyproject.toml"
    out[pyproject] = _replace_block(pyproject.read_text(), SCRIPTS_BEGIN, SCRIPTS_END, scripts_block(), str(pyproject))
    bundle = repo / "databricks.yml"
    text = _replace_block(bundle.read_text(), TASKS_BEGIN, TASKS_END, tasks_block(), str(bundle))
    out[bundle] = _replace_block(text, MAINT_BEGIN, MAINT_END, tasks_block(pipeline=False), str(bundle))
    out[repo / "docs" / "configuration.md"] = config_doc.markdown()  # derived from the config classes, likewise
    return out


def stale_files(repo: Path) -> list[Path]:
    """Files that disagree with the specs, and spark-submit scripts of jobs that no longer exist."""
    expected = expected_files(repo)
    stale = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    keep = {p.name for p in expected if p.parent.name == "jobs"} | {"pipeline.py"}
    stale += [p for p in sorted((repo / "jobs").glob("*.py")) if p.name not in keep]
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omicslake.jobs.registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=".", help="the checkout to write (default: .)")
    parser.add_argument("--check", action="store_true", help="only list what differs; exit 1 if anything does")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    stale = stale_files(repo)
    if args.check:
        for p in stale:
            print(f"out of date with the job specs: {p.relative_to(repo)}")
        return 1 if stale else 0
    expected = expected_files(repo)
    for p in stale:
        if p in expected:
            p.write_text(expected[p])
            print(f"wrote {p.relative_to(repo)}")
        else:
            p.unlink()
            print(f"removed {p.relative_to(repo)} (no such job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
