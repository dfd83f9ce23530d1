"""spark-submit entry: omicslake job conform_ehr."""

import sys

from omicslake.jobs.conform_ehr import main

sys.exit(main())
