"""The session's small clean lake: one generated input (80 patients, 16 genotyped samples) through
ingest_ehr -> conform_ehr -> ingest_vcf -> build_cohort -> train -> score, and genomic_qc, in the
worker's session, with every commit point the run reaches recorded (``OMICSLAKE_FAULT_LOG``).

Two whole-pipeline tests compare a lake of their own with a clean run of the same input, and this
is that clean run for both (issue 20: one pipeline run instead of two):

- the kill chain (tests/reliability/test_kill_anywhere.py) kills attempts of the same pipeline on
  another root at points of this run's log, and compares the lake the last attempt leaves with this one;
- the object-store test (tests/integration/test_object_store.py) runs the jobs up to gold on
  ``s3a://`` with the same input and run id, and compares the two lakes table by table.

Nothing writes to this lake after the fixture: both tests only read it (their xdist group puts
them on one worker, so it is built once).
"""

from __future__ import annotations

from typing import Any

import pytest
from pyspark.sql import SparkSession

from omicslake.config import load_config
from omicslake.synth.people import REFERENCE_DATE

# the jobs the kill chain kills and reruns, in the pipeline's order
JOBS = ["ingest_ehr", "conform_ehr", "ingest_vcf", "build_cohort", "train", "score"]
# and one more job on the genotypes for the object store (Hail reading and writing on s3a)
CLEAN_JOBS = [*JOBS, "genomic_qc"]
RUN_ID = "clean"
SETS = [
    "jobs.generate.patients=80",
    "jobs.generate.samples=16",
    "jobs.generate.variants=60",
    # what the kills and the object store test is the commit path and where tables live, not how each
    # source format parses (the EHR tests do that): one EHR format and one cohort keep every layer
    'jobs.ingest_ehr.sources=["synthea", "sample_link"]',
    'jobs.build_cohort.cohorts=["t2d_incident"]',
    "spark.shuffle_partitions=2",
    "spark.ui=false",
    "spark.driver_memory=2g",
    'jobs.train.grid={"regParam": [0.01]}',
    "jobs.train.seed=1",  # at 80 patients (8 cases) the default seed's test split has no case; this one has 3
    # the synthetic world's today for the 90+ top-coding (default: the calendar's): lakes built on either
    # side of midnight stay equal
    f"jobs.conform_ehr.reference_date={REFERENCE_DATE}",
]


@pytest.fixture(scope="session")
def small_clean_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The clean run: its root, settings (``--set`` values, lake.root aside; the landing folder is in
    them), config, run id and the commit points it reached, in order (the labels of
    ``omicslake.io.faults``)."""
    from omicslake.jobs.base import execute
    from omicslake.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("small")
    landing = tmp / "landing"  # outside the root: every lake of the same input reads the same files
    sets = [*SETS, f"jobs.generate.out={landing}"]
    root = tmp / "clean"
    cfg = load_config("local", overrides=[*sets, f"lake.root={root}"])
    assert execute(spark, cfg, "generate", run_id="gen").status == "succeeded"
    points = tmp / "clean_points.log"
    with pytest.MonkeyPatch.context() as env:  # the fault log for this run only
        env.setenv("OMICSLAKE_FAULT_LOG", str(points))
        results = run_pipeline(spark, cfg, CLEAN_JOBS, run_id=RUN_ID)
    assert {r.job: r.status for r in results} == dict.fromkeys(CLEAN_JOBS, "succeeded"), [
        (r.job, r.status) for r in results
    ]
    labels = [line.split("\t", 1)[1] for line in points.read_text().splitlines()]
    return {"root": root, "sets": sets, "cfg": cfg, "labels": labels, "run_id": RUN_ID}
