"""spark-submit entry: omicslake job ingest_vcf."""

import sys

from omicslake.jobs.ingest_vcf import main

sys.exit(main())
