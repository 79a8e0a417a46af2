"""This repository's harness (not the pattern): the command line of one run
of pattern 2 (`python -m harness`, harness/__main__.py).

    python -m harness                        an ETL run for today's logical date (UTC), and the
                                             training run its asset event starts
    python -m harness --date 2026-01-01      for another logical date
    python -m harness --n-estimators 1 --max-depth 1      params (--min-accuracy too)
    python -m harness services FILE          prepare the local tier's Airflow services (services.py)
    python -m harness airflow ARGS...        any airflow command with the services' AIRFLOW_HOME

With P2_AIRFLOW_API_URL (make sets it on both tiers) the ETL DAG is triggered
over Airflow's REST API and both runs are followed (rest.py); without it both
DAGs run in this process (in_process.py). The options become the ETL run's
conf: only those given, so the defaults and ranges stay the params' own.
Either way the runs end with a summary and one stable line for scripts and
tests (report.py):
    Result: pattern=p2 status=ok decision=published ... etl_run=... train_run=...
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime

from errors import P2Error
from harness import report
from settings import P2Settings


def parse_args(argv: list[str]) -> tuple[datetime, dict]:
    """The logical date, and the DAG run's conf: only the params given."""
    parser = argparse.ArgumentParser(
        prog="python -m harness", description="Pattern 2: one DAG run (ETL in Airflow, training in KFP)."
    )
    parser.add_argument("--date", type=date.fromisoformat, default=datetime.now(UTC).date(), help="logical date")
    parser.add_argument("--n-estimators", type=int, help="DAG param n_estimators")
    parser.add_argument("--max-depth", type=int, help="DAG param max_depth (0 means unlimited)")
    parser.add_argument("--min-accuracy", type=float, help="DAG param min_accuracy")
    args = parser.parse_args(argv)
    given = {"n_estimators": args.n_estimators, "max_depth": args.max_depth, "min_accuracy": args.min_accuracy}
    logical_date = datetime(args.date.year, args.date.month, args.date.day, tzinfo=UTC)
    return logical_date, {k: v for k, v in given.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = P2Settings()
    if argv[:1] == ["airflow"]:
        from harness import in_process

        in_process.exec_airflow(settings, argv[1:])
    if argv[:1] == ["services"]:
        from harness import services

        return services.main(argv[1:])
    logical_date, conf = parse_args(argv)
    started = time.monotonic()
    api_url = settings.airflow_api_url.rstrip("/")
    try:
        if api_url:  # a running Airflow: over its REST API, without importing airflow here
            from harness import rest as mode
        else:
            from harness import in_process as mode
        run = mode.trigger_and_wait(settings, logical_date, conf)
    except P2Error as exc:
        print(exc.render(), file=sys.stderr)
        print("Result: pattern=p2 status=failed", file=sys.stderr)
        return 1
    outcome = report.outcome_of(run, logical_date, settings)
    print(report.summary(outcome, time.monotonic() - started, settings, api_url))
    line = report.result_line(outcome)
    if outcome["status"] != "ok":
        for part in ("etl", "train"):  # a remote run: its tasks' errors
            for task, errors in ((run.get(part) or {}).get("task_errors") or {}).items():
                print(
                    f"{task} failed: " + "\n  ".join(errors or ["(no error in its log; see the UI)"]), file=sys.stderr
                )
        if run.get("already_ended"):
            print(mode.rerun_hint(settings, run), file=sys.stderr)
        print(line, file=sys.stderr)
        return 1
    print(line)
    return 0
