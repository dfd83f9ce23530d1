"""spark-submit entry: omicslake job psychometrics."""

import sys

from omicslake.jobs.psychometrics import main

sys.exit(main())
