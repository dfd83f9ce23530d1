"""The jobs of omicslake and the DAG they form, derived from the jobs' own specs.

Each job is a module here with ``SPEC`` (``omicslake.jobs.spec.JobSpec``), ``run(spark, cfg,
lake)`` and ``main(argv)``. The registry finds the job modules by their ``SPEC``; the DAG, the
CLI's job list, the console scripts, the spark-submit scripts and the Databricks bundle's tasks
all come from it (``omicslake.jobs.registry``; tests/unit/test_registry.py holds the checked-in
files equal to it).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from omicslake.jobs.spec import JobSpec

_NOT_JOBS = {"base", "cli", "registry", "spec"}


@functools.cache
def specs() -> dict[str, JobSpec]:
    """Every job's spec, in dependency order (ties by name), checked: names match modules, every
    upstream job exists, no cycles."""
    found: dict[str, JobSpec] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_JOBS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, JobSpec):
            raise TypeError(f"{module.__name__} is in omicslake.jobs but defines no SPEC = JobSpec(...)")
        if spec.name != info.name:
            raise TypeError(f"{module.__name__}: SPEC.name is {spec.name!r}; it must be the module's name")
        found[spec.name] = spec
    for spec in found.values():
        unknown = [d for d in spec.after if d not in found]
        if unknown:
            raise TypeError(f"job {spec.name}: runs after unknown job(s) {unknown}")
        outside = [d for d in spec.after if spec.pipeline and not found[d].pipeline]
        if outside:
            raise TypeError(f"job {spec.name} is in the pipeline but runs after {outside}, which are not")
    # Depth first from the jobs nothing runs after, each job's upstream jobs in the order its spec
    # names them: a stable order that reads like the data flow (ingest, conform, cohort, models).
    ordered: dict[str, JobSpec] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise TypeError(f"the job specs form a cycle: {' -> '.join([*visiting[visiting.index(name) :], name])}")
        visiting.append(name)
        for d in found[name].after:
            visit(d)
        visiting.pop()
        ordered[name] = found[name]

    needed = {d for s in found.values() for d in s.after}
    # the pipeline's jobs first, then those on their own schedule (maintain)
    for name in sorted(found, key=lambda n: (not found[n].pipeline, n in needed, n)):
        visit(name)
    return ordered


def pipeline_jobs() -> list[str]:
    """The jobs ``omicslake pipeline`` runs, in dependency order (every job whose spec says pipeline)."""
    return [name for name, s in specs().items() if s.pipeline]


def dag() -> dict[str, tuple[str, ...]]:
    """job -> the jobs it runs after, in dependency order."""
    return {name: spec.after for name, spec in specs().items()}


def spec(name: str) -> JobSpec:
    try:
        return specs()[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; jobs are {list(specs())}") from None


def downstream(names: set[str]) -> set[str]:
    """names and every job that (transitively) runs after one of them."""
    out = set(names)
    for name, s in specs().items():
        if any(d in out for d in s.after):
            out.add(name)
    return out
