"""spark-submit entry: omicslake job gwas."""

import sys

from omicslake.jobs.gwas import main

sys.exit(main())
