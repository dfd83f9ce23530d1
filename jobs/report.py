"""spark-submit entry: omicslake job report."""

import sys

from omicslake.jobs.report import main

sys.exit(main())
