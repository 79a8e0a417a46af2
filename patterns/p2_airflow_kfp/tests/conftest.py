"""Pattern 2's fast tests: the pattern's pure logic and its contracts, with no
service running, in seconds. From the pattern folder: `uv run pytest`.
(The KFP side has its own: `cd pipeline && uv run pytest`. The runs against
real services are the repository's stack tests, tests/p2_airflow_kfp/.)"""

from __future__ import annotations

import os
import tempfile


def pytest_configure(config) -> None:
    # Airflow reads its home when it is first imported: a throwaway one, never ~/airflow.
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="p2-fast-tests-airflow-")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    # The DAG file reads its settings when imported: local mode, whatever the caller's environment says.
    for name in [n for n in os.environ if n.startswith("P2_")]:
        del os.environ[name]
    os.environ["P2_KFP_HOST"] = ""
