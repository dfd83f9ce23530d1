"""spark-submit entry: omicslake job survival."""

import sys

from omicslake.jobs.survival import main

sys.exit(main())
