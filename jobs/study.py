"""spark-submit entry: omicslake job study."""

import sys

from omicslake.jobs.study import main

sys.exit(main())
