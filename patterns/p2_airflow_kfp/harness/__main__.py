"""`python -m harness`: this repository's harness, one run of pattern 2 (an ETL run and its training run)
(the options: harness/cli.py)."""

import logging
import os
import sys

from harness.cli import main

if __name__ == "__main__":
    code = main()
    # Everything is written, committed and flushed by now. The interpreter's
    # own teardown of Airflow's import graph took about 3 s on two cores, for
    # nothing: leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
