"""spark-submit entry: omicslake job omics_qc."""

import sys

from omicslake.jobs.omics_qc import main

sys.exit(main())
