"""spark-submit entry: omicslake job train."""

import sys

from omicslake.jobs.train import main

sys.exit(main())
