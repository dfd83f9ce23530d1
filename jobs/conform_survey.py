"""spark-submit entry: omicslake job conform_survey."""

import sys

from omicslake.jobs.conform_survey import main

sys.exit(main())
