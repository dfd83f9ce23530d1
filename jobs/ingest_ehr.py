"""spark-submit entry: omicslake job ingest_ehr."""

import sys

from omicslake.jobs.ingest_ehr import main

sys.exit(main())
