"""The image build's decisions and its trust in the wheelhouse, with no Docker
engine and no server: which registry a base comes from, when auto mode ships
source and says why, and that an air-gapped build installs only the lock's
hashed files from a server it started itself."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

import deploy
import image
import release
from errors import P4Error

PATTERN = Path(__file__).resolve().parents[1]


def test_the_base_image_is_declared_once_in_the_dockerfile():
    dockerfile = (PATTERN / "Dockerfile").read_text()
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image.default_base_image())
    assert dockerfile.count("ARG BASE_IMAGE") == 1 and "FROM ${BASE_IMAGE}" in dockerfile


@pytest.mark.parametrize(
    ("name", "registry"),
    [
        ("python:3.11-slim-bookworm", ("registry-1.docker.io", 443)),
        ("local/debian:bookworm", ("registry-1.docker.io", 443)),  # no host part: Docker Hub
        ("ghcr.io/acme/ml/p4-flows:abc", ("ghcr.io", 443)),
        ("localhost:5000/p4-flows:abc", ("localhost", 5000)),
        ("registry.example:8443/p4:1", ("registry.example", 8443)),
    ],
)
def test_a_base_image_is_pulled_from_the_registry_its_name_says(name, registry):
    assert image.registry_of(name) == registry


def test_without_docker_auto_ships_source_and_says_why_and_image_is_an_error(settings, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")  # no `docker` on PATH
    assert release.resolve_mode(settings(P4_BUILD="auto")) == "source"
    assert "P4_BUILD=auto chose SOURCE: no Docker engine answers `docker info`" in capsys.readouterr().err
    with pytest.raises(P4Error, match="P4_BUILD=image, but no Docker engine answers") as refused:
        release.resolve_mode(settings(P4_BUILD="image"))
    assert "P4_BUILD=source" in refused.value.fix
    assert release.resolve_mode(settings(P4_BUILD="source")) == "source"


def test_the_dockerfile_installs_only_hashed_files_and_runs_as_a_user():
    dockerfile = (PATTERN / "Dockerfile").read_text()
    # Air-gapped: the requirements' own hash is pinned, every wheel is checked against the lock's hashes.
    assert "sha256sum -c --quiet -" in dockerfile and "$REQUIREMENTS_SHA256" in dockerfile
    assert re.search(r"pip install .*--no-index .*\n.*--require-hashes", dockerfile)
    # From a registry: uv installs the lock itself (it checks the lock's hashes).
    assert "uv sync --locked --no-dev" in dockerfile
    assert f"--uid {image.UID}" in dockerfile and dockerfile.rstrip().endswith("USER flows")
    assert f"WORKDIR {image.CODE_DIR}" in dockerfile


@pytest.mark.skipif(shutil.which("uv") is None and "UV" not in os.environ, reason="uv is not installed")
def test_the_requirements_are_the_lock_with_a_hash_for_every_package():
    text = image.requirements()
    entries = re.split(r"\n(?=\S)", text.strip())
    pinned = [e for e in entries if not e.startswith("#")]
    assert len(pinned) > 50 and all("==" in e and "--hash=sha256:" in e for e in pinned), pinned[:3]
    assert any(e.startswith("prefect==3.8.8") for e in pinned)
    assert not any(e.startswith(("pytest==", "ruff==")) for e in pinned), "dev tools in the image"


def test_the_wheelhouse_is_served_by_the_build_itself_or_the_build_stops(settings, monkeypatch, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    monkeypatch.setattr(image, "requirements", lambda: "demo==1.0 --hash=sha256:00\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = settings(P4_WHEELHOUSE=str(wheels), P4_WHEELHOUSE_PORT=str(port))
    with image.serve_wheelhouse(s) as (url, digest):
        assert url == f"http://127.0.0.1:{port}"
        served = urllib.request.urlopen(f"{url}/requirements.txt", timeout=5).read()
        assert served == b"demo==1.0 --hash=sha256:00\n" and hashlib.sha256(served).hexdigest() == digest
        assert urllib.request.urlopen(f"{url}/demo-1.0-py3-none-any.whl", timeout=5).read() == b"not really a wheel"
        # The port is now held: a second build cannot trust what answers there.
        with pytest.raises(P4Error, match="another process holds it") as taken, image.serve_wheelhouse(s):
            pass
        assert "P4_WHEELHOUSE_PORT" in taken.value.fix
    (wheels / "demo-1.0-py3-none-any.whl").unlink()
    with pytest.raises(P4Error, match="holds no wheels"), image.serve_wheelhouse(s):
        pass


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_a_docker_pool_made_here_runs_local_images_that_reach_the_local_stack(settings, monkeypatch, platform):
    monkeypatch.setattr(deploy.sys, "platform", platform)
    s = settings(P4_PREFECT_API_URL="http://127.0.0.1:4200/api", P4_S3_ENDPOINT_URL="http://127.0.0.1:8333")
    props = deploy._docker_pool_template(s)["variables"]["properties"]
    assert props["image_pull_policy"]["default"] == "Never"  # p4-flows:<sha> was never pushed
    assert props["auto_remove"]["default"] is True
    env = props["env"]["default"]
    assert env["P4_MODEL_BUCKET"] == "p4-models" and env["AWS_ACCESS_KEY_ID"] == s.s3_access_key_id
    if platform == "linux":
        assert props["network_mode"]["default"] == "host" and env["P4_S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    else:  # Docker Desktop has no host network: S3 through host.docker.internal (the worker maps the API URL)
        assert props["network_mode"]["default"] is None
        assert env["P4_S3_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL_S3"] == "http://host.docker.internal:8333"


def test_a_docker_pool_for_a_remote_prefect_is_left_as_prefect_makes_it(settings):
    from prefect_docker.worker import DockerWorker

    s = settings(P4_PREFECT_API_URL="https://api.prefect.cloud/api/accounts/a/workspaces/w")
    assert deploy._docker_pool_template(s) == DockerWorker.get_default_base_job_template()
