"""spark-submit entry: omicslake job genetic_features."""

import sys

from omicslake.jobs.genetic_features import main

sys.exit(main())
