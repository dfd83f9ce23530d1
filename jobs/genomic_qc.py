"""spark-submit entry: omicslake job genomic_qc."""

import sys

from omicslake.jobs.genomic_qc import main

sys.exit(main())
