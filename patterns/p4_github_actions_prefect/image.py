"""Pattern 4's container image: can one be built here, build it, what was built.

release.py calls these for an image release (P4_BUILD=image, or auto when a
build can succeed). An image build needs a Docker engine and its base image:
on the engine already, or from a registry that answers. Where no registry
answers, P4_BASE_IMAGE names a local base (this repository's `make p4-build`
builds one with debootstrap) and P4_WHEELHOUSE a folder of wheels: the build
then installs the lock's packages from that folder only, each file checked
against the hashes in uv.lock (see the Dockerfile).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from errors import P4Error, say
from settings import PATTERN_DIR, P4Settings

DOCKERFILE = PATTERN_DIR / "Dockerfile"
CODE_DIR = "/opt/prefect/p4"  # WORKDIR in ./Dockerfile
UID = 10001  # the Dockerfile's user `flows`


# ## Can an image be built here?
def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def default_base_image() -> str:
    """The Dockerfile's `ARG BASE_IMAGE=...`: declared there, read here."""
    found = re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    if not found:
        raise P4Error(f"{DOCKERFILE} declares no `ARG BASE_IMAGE=<image>`", "restore that line")
    return found.group(1)


def registry_of(image: str) -> tuple[str, int]:
    """Where `docker build` would pull `image` from (Docker Hub for a bare name)."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        host, _, port = first.partition(":")
        return host, int(port or 443)
    return "registry-1.docker.io", 443


def registry_answers(image: str, timeout: float) -> bool:
    host, port = registry_of(image)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    why: str
    fix: str = ""


def buildable(settings: P4Settings, image: str) -> Verdict:
    """Whether `docker build` of this release can succeed here, and why."""
    if not docker_answers():
        return Verdict(False, "no Docker engine answers `docker info`", "start Docker, or set P4_BUILD=source")
    if exists(image):
        return Verdict(True, f"image {image} is already built")
    base = settings.base_image or default_base_image()
    if exists(base):
        return Verdict(True, f"Docker answers and base image {base} is on this Docker engine")
    host, _ = registry_of(base)
    if registry_answers(base, settings.connect_timeout):
        return Verdict(True, f"Docker answers and {host} (base image {base}) answers")
    return Verdict(
        False,
        f"base image {base} is not on this Docker engine and its registry {host} does not answer",
        "load a Debian bookworm base into Docker and name it in P4_BASE_IMAGE, with P4_WHEELHOUSE for the "
        "packages (in this repository `P4_BUILD=image make pattern-4` makes both), or set P4_BUILD=source",
    )


# ## Build, inspect, push
def exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def image_id(image: str) -> str:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True)
    if out.returncode != 0:
        raise P4Error(f"image {image} is not on this Docker engine", "run the build stage (`python release.py build`)")
    return out.stdout.strip()


def build(settings: P4Settings, image: str, release: str, git_sha: str | None) -> None:
    base = settings.base_image or default_base_image()
    args = ["--tag", image, "--label", f"org.opencontainers.image.revision={git_sha or 'none'}"]
    args += ["--build-arg", f"P4_RELEASE={release}", "--build-arg", f"BASE_IMAGE={base}"]
    # Without buildx (Debian's docker.io has none) `docker build` needs the classic builder.
    buildkit = subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0
    env = os.environ if buildkit else os.environ | {"DOCKER_BUILDKIT": "0"}
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / "image-build.log"
    if settings.wheelhouse is None:
        say(f"build: docker build -t {image} FROM {base}; packages from PyPI by uv.lock (log: {log})")
        _build(args, env, log)
        return
    with serve_wheelhouse(settings) as (url, digest):
        say(f"build: docker build -t {image} FROM {base}; packages from {settings.wheelhouse} at {url} (log: {log})")
        args += ["--network", "host", "--build-arg", f"WHEELHOUSE_URL={url}"]
        _build([*args, "--build-arg", f"REQUIREMENTS_SHA256={digest}"], env, log)


def _build(args: list[str], env: dict[str, str] | os._Environ, log: Path) -> None:
    with log.open("w") as out:
        result = subprocess.run(["docker", "build", *args, str(PATTERN_DIR)], env=env, stdout=out, stderr=out)
    if result.returncode != 0:
        say("".join(log.read_text().splitlines(keepends=True)[-40:]))
        raise P4Error(f"`docker build` failed (exit {result.returncode})", f"read the end of {log} above")


def push(image: str) -> str:
    """Push to the image's registry; returns the digest it answered with."""
    _registry_login(image)
    say(f"push: docker push {image}")
    docker("push", image)
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{join .RepoDigests " "}}', image], capture_output=True, text=True
    )
    return out.stdout.split()[0] if out.stdout.strip() else ""


def _registry_login(image: str) -> None:
    """Log in to the image's registry when CI hands over a token (never echoed)."""
    token = os.environ.get("P4_REGISTRY_TOKEN")
    if not token:
        return  # already logged in (docker/login-action, `docker login`) or a registry without auth
    registry = image.split("/", 1)[0]
    user = os.environ.get("P4_REGISTRY_USER") or os.environ.get("GITHUB_ACTOR") or "token"
    subprocess.run(
        ["docker", "login", registry, "--username", user, "--password-stdin"],
        input=token,
        text=True,
        check=True,
        capture_output=True,
    )


def docker(*args: str, env: os._Environ | dict[str, str] | None = None) -> None:
    result = subprocess.run(["docker", *args], env=env, stdout=sys.stderr)
    if result.returncode != 0:
        raise P4Error(f"`docker {args[0]}` failed (exit {result.returncode})", "read Docker's output above")


# ## The wheelhouse, served for one build
def requirements() -> str:
    """uv.lock as a requirements file with every hash (what `uv sync --locked` installs)."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise P4Error("an image build from P4_WHEELHOUSE needs uv, to export uv.lock", "install uv or put it on PATH")
    command = [uv, "export", "--locked", "--no-dev", "--no-emit-project", "--no-header", "--quiet"]
    out = subprocess.run([*command, "--project", str(PATTERN_DIR)], capture_output=True, text=True)
    if out.returncode != 0 or "--hash=sha256:" not in out.stdout:
        raise P4Error(f"`uv export` of {PATTERN_DIR / 'uv.lock'} failed: {out.stderr.strip()}", "run `uv lock`")
    return out.stdout


@contextmanager
def serve_wheelhouse(settings: P4Settings) -> Iterator[tuple[str, str]]:
    """Serve P4_WHEELHOUSE and the lock's requirements on 127.0.0.1 while a build
    runs; yields (url, sha256 of the requirements). The port is bound here, so
    what answers is this server; a port another process holds is an error."""
    folder = settings.wheelhouse
    assert folder is not None
    if not folder.is_dir() or not any(folder.glob("*.whl")):
        raise P4Error(f"P4_WHEELHOUSE={folder} holds no wheels", "fill it (`pip download` the lock) or unset it")
    text = requirements().encode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != "/requirements.txt":
                return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:  # quiet: docker's output is the log
            pass

    try:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", settings.wheelhouse_port), partial(Handler, directory=str(folder))
        )
    except OSError as exc:
        raise P4Error(
            f"cannot serve the wheelhouse on 127.0.0.1:{settings.wheelhouse_port} ({exc.strerror}); another "
            "process holds it, and a build must install only from a server it started",
            "stop that process or set P4_WHEELHOUSE_PORT to a free port",
        ) from None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{settings.wheelhouse_port}", hashlib.sha256(text).hexdigest()
    finally:
        server.shutdown()
        server.server_close()
