"""The one declaration of a job: its spec, next to its code.

Every job module defines ``SPEC = JobSpec(...)``: its name, what it does, the jobs it runs
after, the configuration it reads and whether it always runs. Everything else that names jobs is
derived from the specs (``omicslake.jobs.registry``): the DAG, the CLI's job list, the console
scripts, the spark-submit scripts under ``jobs/`` and the Databricks bundle's tasks (a test holds
the checked-in ones equal to what the specs give).

What a job reads besides configuration is recorded while it runs, by the ``Lake`` handle: the
tables and their versions, the files and their SHA-256, the MLflow model versions. The pipeline
skips a job only when all of those, and the configuration its spec declares, are unchanged since
its last successful run (``omicslake.pipeline.skip_decision``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from omicslake import __version__
from omicslake.config import Config
from omicslake.errors import ConfigError


@dataclass(frozen=True)
class JobSpec:
    name: str
    description: str
    after: tuple[str, ...] = ()  # the jobs whose outputs this one reads
    # Dotted config paths the job reads, e.g. "jobs.train" (a whole section) or
    # "hail.reference_genome" (one key). A change to any of them reruns the job.
    config: tuple[str, ...] = ()
    # True for jobs that decide for themselves what is new (file-incremental ingests: a run with
    # nothing new commits nothing) or that are cheap and read everything (the report).
    always_run: bool = False
    # False for jobs on their own schedule, outside the pipeline's DAG (maintain: compacting and
    # vacuuming tables must not interleave with the jobs that write them). They are still jobs:
    # `omicslake run <job>`, a console script, a spark-submit script and a task of the bundle's
    # maintenance job.
    pipeline: bool = True
    # True for jobs that call Hail (VCF and PLINK import, genomic QC, PCs and PRS, GWAS, the
    # generator's VCF): Hail is initialised on the session before such a job runs, and only then,
    # so that a process running other jobs does not pay Hail's start-up (3-6 s a process here).
    hail: bool = False

    @property
    def script(self) -> str:
        """Its console script (pyproject [project.scripts]) and Databricks entry point."""
        return "omicslake-" + self.name.replace("_", "-")

    @property
    def module(self) -> str:
        return f"omicslake.jobs.{self.name}"


def config_value(cfg: Config, dotted: str) -> Any:
    """The value at a dotted path of the config, as plain data (dicts, lists, scalars)."""
    node: Any = dataclasses.asdict(cfg)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"job spec names config {dotted!r}, which is not a config key")
        node = node[part]
    return node


def config_inputs(cfg: Config, spec: JobSpec) -> dict[str, Any]:
    """The declared config of a job: dotted path -> value."""
    return {path: config_value(cfg, path) for path in spec.config}


def skip_key(cfg: Config, spec: JobSpec) -> str:
    """A hash of what decides a job's output besides its recorded inputs: the config its spec
    declares and the omicslake version. Not the lake root or the environment: the same job on a
    copied lake, or on a cluster instead of local mode, writes the same tables."""
    blob = json.dumps(
        {"job": spec.name, "config": config_inputs(cfg, spec), "version": __version__}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
