"""spark-submit entry: omicslake job omics_assoc."""

import sys

from omicslake.jobs.omics_assoc import main

sys.exit(main())
