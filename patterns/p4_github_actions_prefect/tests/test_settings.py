"""The settings object (settings.py): what each variable may be, which name
wins, and what the build derives from them; a wrong value stops with the
variable's name, never a traceback."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from settings import load_settings


@pytest.mark.parametrize(
    "repo", ["p4-flows", "acme/p4-flows", "ghcr.io/acme/ml/p4-flows", "localhost:5000/p4-flows", "reg.example:8443/a/b"]
)
def test_an_image_repo_is_a_lower_case_name_without_a_tag(settings, repo):
    assert settings(P4_IMAGE_REPO=repo).image_repo == repo


@pytest.mark.parametrize("repo", ["P4-Flows", "ghcr.io/Acme/p4-flows", "p4-flows:latest", "ghcr.io/acme/p4:v1", ""])
def test_an_image_repo_with_a_tag_or_upper_case_is_refused(settings, repo):
    with pytest.raises(ValidationError, match="must be a lower-case image name without a tag"):
        settings(P4_IMAGE_REPO=repo)


def test_in_github_actions_the_image_goes_to_the_repositorys_ghcr_namespace(settings):
    assert settings().image_repo == "p4-flows"
    assert settings(GITHUB_REPOSITORY="Acme/ML-Patterns").image_repo == "ghcr.io/acme/ml-patterns/p4-flows"


@pytest.mark.parametrize(
    ("repo", "push", "pushed"),
    [
        ("p4-flows", "auto", False),
        ("acme/p4-flows", "auto", False),  # Docker Hub namespace, no registry host: stays here
        ("ghcr.io/acme/p4-flows", "auto", True),
        ("localhost:5000/p4-flows", "auto", True),
        ("localhost/p4-flows", "auto", True),
        ("ghcr.io/acme/p4-flows", "false", False),  # a pull request's dry run
        ("p4-flows", "true", True),
    ],
)
def test_an_image_is_pushed_when_its_name_has_a_registry_host_or_push_says_so(settings, repo, push, pushed):
    assert settings(P4_IMAGE_REPO=repo, P4_PUSH=push).push_image is pushed


def test_the_pattern_variable_wins_over_the_shared_one(settings):
    assert settings(PREFECT_API_URL="http://shared:4200/api").prefect_api_url == "http://shared:4200/api"
    both = settings(PREFECT_API_URL="http://shared:4200/api", P4_PREFECT_API_URL="http://p4:4200/api")
    assert both.prefect_api_url == "http://p4:4200/api"
    assert settings(S3_ENDPOINT_URL="http://s3.example:9000").s3_endpoint_url == "http://s3.example:9000"


@pytest.mark.parametrize("name", ["P4_PREFECT_API_URL", "P4_S3_ENDPOINT_URL"])
def test_an_endpoint_must_be_an_http_url(settings, name):
    with pytest.raises(ValidationError, match="is not an http\\(s\\) URL"):
        settings(**{name: "127.0.0.1:4200"})


def test_the_work_pool_follows_the_build_unless_one_is_named(settings, tmp_path):
    s = settings()
    assert (s.pool_for("source"), s.pool_for("image")) == ("p4-process", "p4-docker")
    assert settings(P4_WORK_POOL="my-k8s").pool_for("image") == "my-k8s"
    assert s.releases == (tmp_path / "state" / "releases").resolve()
    assert settings(P4_RELEASE_DIR=str(tmp_path / "shared")).releases == (tmp_path / "shared").resolve()


def test_flow_runs_get_the_store_settings_they_cannot_read_from_a_dot_env(settings):
    s = settings(P4_MODEL_BUCKET="my-models", P4_S3_ENDPOINT_URL="http://s3.example:9000")
    env = s.flow_run_env()
    assert env["P4_MODEL_BUCKET"] == "my-models" and env["P4_S3_ENDPOINT_URL"] == "http://s3.example:9000"
    assert {"P4_S3_ACCESS_KEY_ID", "P4_S3_SECRET_ACCESS_KEY", "P4_CONNECT_TIMEOUT"} <= set(env)
    assert s.s3_env()["AWS_ENDPOINT_URL_S3"] == "http://s3.example:9000"


@pytest.mark.parametrize(("name", "value"), [("P4_BUILD", "wheel"), ("P4_RUN_TIMEOUT", "0"), ("P4_MODEL_BUCKET", "x")])
def test_a_wrong_setting_stops_with_its_name_and_the_fix(settings, monkeypatch, name, value):
    settings()  # a clean environment
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    message = str(stopped.value)
    assert message.startswith("error: invalid setting ") and "fix: correct it in the environment or .env" in message
    assert name in message and "Traceback" not in message
