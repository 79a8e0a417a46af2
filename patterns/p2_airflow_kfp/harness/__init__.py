"""This repository's harness for pattern 2: how `make pattern-2` and the tests
run the DAG. It is not part of the pattern; in your project the DAG runs on
your Airflow (its scheduler, or a trigger of your own) and none of this is needed.

    python -m harness [--date ...]    one DAG run, then a summary and the `Result:` line (__main__.py)
    python -m harness airflow ARGS    any airflow command with this pattern's AIRFLOW_HOME

- in_process.py: the local tier. Airflow's home in P2_STATE_DIR/airflow
  (SQLite), and the DAG run in this process with `DAG.test()`, the way
  `airflow dags test` runs it: no scheduler, no server, no port.
- rest.py: a running Airflow (the compose tier, P2_AIRFLOW_API_URL set): the
  DAG triggered over Airflow 3's REST API and followed to its end; that path
  never imports airflow.
- report.py: the run's outcome from its task states and XComs, the summary
  and the one `Result: pattern=p2 ...` line that scripts and tests read.
"""
