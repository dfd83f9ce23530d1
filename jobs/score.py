"""spark-submit entry: omicslake job score."""

import sys

from omicslake.jobs.score import main

sys.exit(main())
