"""Pattern 1's command line: `python flow.py [run|serve] [--parameter value ...]`
and `python flow.py score --data-file F.csv`.

The options are the flow's parameters (the scoring flow's for `score`), read from its signature, where their
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
from report import FAILED, result_line, scoring_result_line, scoring_summary, summary
from settings import P1Settings, load_settings


def parser(flow, commands: tuple[str, ...] = ("run", "serve")) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Pattern 1: {flow.name}, with Prefect + MLflow.",
        epilog="`python flow.py score --help`: score a batch with the champion and check it for drift.",
    )
    parser.add_argument("command", nargs="?", default=commands[0], choices=commands)
    for parameter in parameters_of(flow):
        limits = f", {parameter.rule}" if parameter.rule else ""
        default = f" (default {parameter.default}{limits})" if parameter.default is not None else ""
        parser.add_argument(
            parameter.flag,
            type=parameter.type,
            default=argparse.SUPPRESS,  # not given: not passed on
            help=parameter.description + default,
        )
    if "serve" in commands:
        parser.add_argument(
            "--cron", default=deploy.DEFAULT_CRON, help="schedule for `serve` (default: daily 03:00 UTC)"
        )
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


def main(flow, argv: list[str] | None = None, scoring=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if scoring is not None and argv[:1] == ["score"]:
        flow, commands, failed = scoring, ("score",), FAILED.replace(" status=", " step=score status=")
    else:
        commands, failed = ("run", "serve"), FAILED
    args = vars(parser(flow, commands).parse_args(argv))
    command, cron = args.pop("command"), args.pop("cron", None)
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
        print(failed, file=sys.stderr)
        return 1
    if command == "score":
        print(scoring_summary(settings, outcome))
        print(scoring_result_line(outcome))
    else:
        print(summary(settings, outcome))
        print(result_line(settings, outcome))
    return 0
