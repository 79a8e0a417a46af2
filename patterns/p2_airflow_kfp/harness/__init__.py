"""This repository's harness for pattern 2: how `make pattern-2` and the tests
run the DAGs. It is not part of the pattern; in your project the DAGs run on
your Airflow (its scheduler, or a trigger of your own) and none of this is needed.

    python -m harness [--date ...]    an ETL run and the training run its asset event starts,
                                      then a summary and the `Result:` line (__main__.py, cli.py)
    python -m harness services FILE   prepare the local tier's Airflow services (services.py)
    python -m harness airflow ARGS    any airflow command with the services' AIRFLOW_HOME

- rest.py: a running Airflow (P2_AIRFLOW_API_URL, set by make on both tiers):
  the ETL DAG triggered over Airflow 3's REST API, its asset event and the
  training run the scheduler created from it, both followed to their end;
  that path never imports airflow.
- services.py: the local tier's Airflow home (SQLite, the admin's password,
  a JWT key) and the environment its four supervisord programs start with.
- in_process.py: no Airflow URL: both DAGs run in this process with
  `DAG.test()` in a database of their own, a debugging aid.
- report.py: the runs' outcome from their task states and XComs, the summary
  and the one `Result: pattern=p2 ...` line that scripts and tests read.
"""
