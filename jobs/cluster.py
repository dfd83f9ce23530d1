"""spark-submit entry: omicslake job cluster."""

import sys

from omicslake.jobs.cluster import main

sys.exit(main())
