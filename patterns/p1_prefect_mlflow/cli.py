"""Pattern 1's command line: `python flow.py [run|serve] [--parameter value ...]`.

The options are the flow's parameters, read from its signature, where their
types, defaults and ranges are declared once. An option not given is not
passed on: the flow's default applies. `main()` is where the process is set
up (settings into the environment), checks what it can before the run,
and turns every error a user can fix into `error:` / `fix:` lines and
`Result: pattern=p1 status=failed` on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import sys

import deploy
from checks import check_parameters, check_prefect, parameters_of
from errors import explain
from report import FAILED, result_line, summary
from settings import P1Settings, load_settings


def parser(flow) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Pattern 1: train, register and serve with Prefect + MLflow.")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "serve"])
    for parameter in parameters_of(flow):
        limits = f", {parameter.rule}" if parameter.rule else ""
        default = f" (default {parameter.default}{limits})" if parameter.default is not None else ""
        parser.add_argument(
            parameter.flag,
            type=parameter.type,
            default=argparse.SUPPRESS,  # not given: not passed on
            help=parameter.description + default,
        )
    parser.add_argument("--cron", default=deploy.DEFAULT_CRON, help="schedule for `serve` (default: daily 03:00 UTC)")
    return parser


def configure() -> P1Settings:
    """The settings, exported to the environment; then the libraries that read
    the environment when flow.py imported them read it again."""
    settings = load_settings()
    import mlflow.telemetry
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # PREFECT_API_URL and the client's retries
    mlflow.telemetry.set_telemetry_client()  # MLFLOW_DISABLE_TELEMETRY: no phoning home
    return settings


def main(flow, argv: list[str] | None = None) -> int:
    args = vars(parser(flow).parse_args(argv))
    command, cron = args.pop("command"), args.pop("cron")
    given = args  # only the parameters given on the command line
    settings = None
    try:
        settings = configure()
        check_parameters(flow, given)
        check_prefect(settings)
        if command == "serve":
            deploy.serve(flow, cron, given)
            return 0
        outcome = flow(**given)
    except Exception as exc:
        error = explain(exc, settings.mlflow_tracking_uri if settings else "")
        if error is None:
            raise
        print(error.render(), file=sys.stderr)
        print(FAILED, file=sys.stderr)
        return 1
    print(summary(settings, outcome))
    print(result_line(settings, outcome))
    return 0
