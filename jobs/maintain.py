"""spark-submit entry: omicslake job maintain."""

import sys

from omicslake.jobs.maintain import main

sys.exit(main())
