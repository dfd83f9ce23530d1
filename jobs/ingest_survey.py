"""spark-submit entry: omicslake job ingest_survey."""

import sys

from omicslake.jobs.ingest_survey import main

sys.exit(main())
