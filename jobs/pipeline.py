"""spark-submit entry: the whole pipeline (omicslake pipeline [options])."""

import sys

from omicslake.jobs.cli import main

sys.exit(main(["pipeline", *sys.argv[1:]]))
