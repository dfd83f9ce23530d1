"""spark-submit entry: omicslake job build_cohort."""

import sys

from omicslake.jobs.build_cohort import main

sys.exit(main())
