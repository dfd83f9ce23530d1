"""spark-submit entry: omicslake job ingest_omics."""

import sys

from omicslake.jobs.ingest_omics import main

sys.exit(main())
