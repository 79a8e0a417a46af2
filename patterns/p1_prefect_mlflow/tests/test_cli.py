"""The command line passes on only what the user gave (the flow's defaults
apply to the rest), and turns errors into `error:` / `fix:` and the failed
Result line, exit 1."""

from __future__ import annotations

import socket

import pytest

from cli import configure, main, parser
from flow import training_flow


def given(*argv: str) -> dict:
    args = vars(parser(training_flow).parse_args(list(argv)))
    return {k: v for k, v in args.items() if k not in ("command", "cron")}


def test_no_option_passes_no_parameter() -> None:
    assert given() == {}
    assert given("serve") == {}


def test_options_pass_on_what_was_given_with_its_type() -> None:
    assert given("--max-depth", "0", "--test-size", "0.3") == {"max_depth": 0, "test_size": 0.3}
    assert given("--data-file", "x.csv", "--n-estimators", "7") == {"data_file": "x.csv", "n_estimators": 7}


def test_serve_takes_a_cron_schedule() -> None:
    args = parser(training_flow).parse_args(["serve", "--cron", "*/5 * * * *"])
    assert (args.command, args.cron) == ("serve", "*/5 * * * *")
    assert parser(training_flow).parse_args([]).cron == "0 3 * * *"


def test_help_shows_the_signature_defaults_and_ranges() -> None:
    text = parser(training_flow).format_help()
    assert "(default 200, >= 1)" in text
    assert "0 = no limit (default 6, >= 0)" in " ".join(text.split())
    assert "(default 0.25, between 0.05 and 0.5)" in " ".join(text.split())


def test_a_value_of_the_wrong_type_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        parser(training_flow).parse_args(["--n-estimators", "many"])
    assert exited.value.code == 2


def test_a_bad_parameter_fails_before_any_service_is_asked(environ, capsys) -> None:
    environ["P1_PREFECT_API_URL"] = f"http://127.0.0.1:{_free_port()}/api"  # nothing listens
    assert main(training_flow, ["--test-size", "0.9"]) == 1
    err = capsys.readouterr().err
    assert "error: test_size=0.9 must be between 0.05 and 0.5" in err
    assert "fix: pass --test-size" in err
    assert err.rstrip().endswith("Result: pattern=p1 status=failed")


def test_an_unreachable_prefect_api_fails_with_the_fix(environ, capsys) -> None:
    url = f"http://127.0.0.1:{_free_port()}/api"
    environ["P1_PREFECT_API_URL"] = url
    assert main(training_flow, []) == 1
    err = capsys.readouterr().err
    assert f"error: Prefect API at {url}/health is unreachable" in err
    assert "fix: start the local stack with `make up`, or set PREFECT_API_URL" in err
    assert "Result: pattern=p1 status=failed" in err


def test_a_bad_setting_fails_with_its_name(environ, capsys) -> None:
    environ["P1_MAX_NAN_FRACTION"] = "3"
    assert main(training_flow, []) == 1
    err = capsys.readouterr().err
    assert "error: invalid setting P1_MAX_NAN_FRACTION='3'" in err and "fix: correct it in the environment" in err


def test_configure_points_the_imported_libraries_at_the_settings(environ) -> None:
    """flow.py imported Prefect and MLflow before main() read the settings:
    configure() makes them read the exported environment again."""
    import mlflow.telemetry
    from prefect.settings import get_current_settings

    environ["P1_PREFECT_API_URL"] = "http://prefect.example:4200/api"
    environ["P1_MLFLOW_TRACKING_URI"] = "http://mlflow.example:5000"
    configure()
    assert get_current_settings().api.url == "http://prefect.example:4200/api"
    assert mlflow.get_tracking_uri() == "http://mlflow.example:5000"
    assert mlflow.telemetry.get_telemetry_client() is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
