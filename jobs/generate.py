"""spark-submit entry: omicslake job generate."""

import sys

from omicslake.jobs.generate import main

sys.exit(main())
