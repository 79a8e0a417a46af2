"""What a release of pattern 4 is, and its build and push: the stage after
lint and test, the same in GitHub Actions and in `make pattern-4`.

    python release.py build      build (and push) this commit's release
    python release.py validate   check every deployment in prefect.yaml (deploy.py; no server needed)
    python release.py deploy     `prefect deploy --all` from prefect.yaml, then check the result (deploy.py)
    python release.py run        run p4-retrain, wait, check the model; then p4-batch-score (verify.py)

(The command line is cli.py; `python release.py <stage>` is the one command CI,
the Makefile and the README use.)

A release is one git commit: its id is the full SHA (with `-dirty.<hash>` when
the release's files have uncommitted changes, or `src.<hash>` outside git). It
is the image tag, the deployment version, a tag on every flow run and a field
of the model card, so every run and model traces back to a commit.

There are two kinds of build, chosen by P4_BUILD (auto: image when that build
can succeed here, i.e. Docker answers and the base image is on the engine or
its registry answers; otherwise source, and it says why):
- image:  `docker build` of ./Dockerfile tagged <P4_IMAGE_REPO>:<release>
          (image.py), pushed to its registry or kept on this engine; workers of
          a Docker or Kubernetes pool run it.
- source: a snapshot of this folder's code and data, published read-only to
          P4_RELEASE_DIR/<release>/; a process worker runs the flows from it.
prefect.yaml calls `build_step` and `push_step` below as its build and push
steps, and its pull step moves each flow run into `push.code_dir`: the image's
code folder or the snapshot. Both steps are idempotent, so the `build` stage
here and `prefect deploy`'s build steps do the work once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import image as docker_image
from errors import P4Error, say
from settings import PATTERN_DIR, P4Settings, load_settings

# What a release contains: everything a flow run needs, nothing a developer left around.
RELEASE_FILES = ("*.py", "prefect.yaml", "pyproject.toml", "uv.lock", "Dockerfile", ".dockerignore", "data/*.csv")


# ## Which release is this?
@dataclass(frozen=True)
class Release:
    id: str
    git_sha: str | None
    dirty: bool
    content_sha256: str
    files: tuple[str, ...]


def release_files() -> list[str]:
    found = {p.relative_to(PATTERN_DIR).as_posix() for g in RELEASE_FILES for p in PATTERN_DIR.glob(g) if p.is_file()}
    return sorted(found)


def identify(settings: P4Settings) -> Release:
    files = release_files()
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (PATTERN_DIR / name).read_bytes() + b"\0")
    content = digest.hexdigest()
    if settings.git_sha is not None:  # P4_GIT_SHA or GITHUB_SHA: CI names the commit
        sha, dirty = settings.git_sha, False
    else:
        sha, dirty = git_commit(files)
    if sha is None:
        return Release(f"src.{content[:12]}", None, True, content, tuple(files))
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise P4Error(f"P4_GIT_SHA={sha!r} is not a full 40-character git commit SHA", "pass `git rev-parse HEAD`")
    return Release(f"{sha}-dirty.{content[:8]}" if dirty else sha, sha, dirty, content, tuple(files))


def git_commit(files: list[str]) -> tuple[str | None, bool]:
    """`git rev-parse HEAD` of this folder, and whether any of `files` has
    uncommitted changes; (None, False) outside a git checkout. The repository's
    one git_commit() behaviour, except that the dirty check covers the release's
    files only (a README edit is not a new release) and the flag stays apart
    from the SHA (the release id is an image tag: `<sha>-dirty.<hash>`)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=PATTERN_DIR, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    return sha, sha is not None and bool(git("status", "--porcelain", "--", *files))


def resolve_mode(settings: P4Settings, release: Release | None = None) -> str:
    """image or source. auto picks an image only where its build can succeed
    (image.buildable) and says which it chose and why; an explicit image that
    cannot be built is an error naming the reason."""
    if settings.build == "source":
        return "source"
    release = release or identify(settings)
    verdict = docker_image.buildable(settings, f"{settings.image_repo}:{release.id}")
    if settings.build == "image":
        if not verdict.ok:
            raise P4Error(f"P4_BUILD=image, but {verdict.why}", verdict.fix)
        return "image"
    mode = "image" if verdict.ok else "source"
    say(f"build: P4_BUILD=auto chose {mode.upper()}: {verdict.why}")
    return mode


# ## Build and push
def build(settings: P4Settings) -> dict[str, Any]:
    """Build this release (idempotent) and record what was built."""
    release = identify(settings)
    mode = resolve_mode(settings, release)
    out: dict[str, Any] = {
        "release": release.id,
        "git_sha": release.git_sha or "none",
        "dirty": release.dirty,
        "content_sha256": release.content_sha256,
        "mode": mode,
        "work_pool": settings.pool_for(mode),
        "image": None,
        "image_id": "",
        "artifact": None,
    }
    if mode == "image":
        image = f"{settings.image_repo}:{release.id}"
        if docker_image.exists(image):
            say(f"build: image {image} already built")
        else:
            docker_image.build(settings, image, release.id, release.git_sha)
        out |= {"image": image, "image_id": docker_image.image_id(image), "artifact": image}
    else:
        snapshot = settings.state_dir / "build" / release.id
        if (snapshot / "RELEASE.json").is_file():
            say(f"build: source snapshot {snapshot} already built")
        else:
            say(
                f"build: P4_BUILD={settings.build}: this release is a SOURCE snapshot, not an image: "
                "a process worker runs it with its own Python environment"
            )
            _write_snapshot(release, snapshot)
        out |= {"snapshot": str(snapshot), "artifact": f"source:{release.id}"}
    _record(settings, out)
    return out


def _write_snapshot(release: Release, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{release.id[:12]}-", dir=_mkdir(target.parent)))
    for name in release.files:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PATTERN_DIR / name, tmp / name)
    manifest = {"release": release.id, "git_sha": release.git_sha, "content_sha256": release.content_sha256}
    (tmp / "RELEASE.json").write_text(json.dumps(manifest | {"files": list(release.files)}, indent=2))
    if target.exists():  # a half-written snapshot from an interrupted build
        shutil.rmtree(target)
    tmp.rename(target)


def push(settings: P4Settings, built: dict[str, Any]) -> dict[str, Any]:
    """Publish the build where workers pull it from (idempotent); `code_dir` is the
    folder a flow run's pull step moves into."""
    if built["mode"] == "image":
        image = built["image"]
        out = {"code_dir": docker_image.CODE_DIR, "pushed": settings.push_image, "digest": ""}
        if settings.push_image:
            out["digest"] = docker_image.push(image)
        else:
            say(f"push: {image} stays on this Docker engine (P4_PUSH={settings.push}); only workers here can run it")
    else:
        published = settings.releases / built["release"]
        manifest = published / "RELEASE.json"
        if manifest.is_file():
            if json.loads(manifest.read_text())["content_sha256"] != built["content_sha256"]:
                raise P4Error(
                    f"{published} already holds release {built['release']} with different content",
                    "releases are immutable: commit your change (a new release id) or remove that folder",
                )
            say(f"push: source snapshot already published at {published}")
        else:
            say(f"push: publishing the source snapshot to {published}")
            tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=_mkdir(published.parent)))
            shutil.copytree(built["snapshot"], tmp, dirs_exist_ok=True)
            for path in tmp.rglob("*"):  # read-only: a run cannot change its release
                path.chmod(0o444 if path.is_file() else 0o555)
            tmp.chmod(0o555)
            tmp.rename(published)
        out = {"code_dir": str(published), "pushed": True}
    _record(settings, built | out)
    return out


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record(settings: P4Settings, values: dict[str, Any]) -> None:
    """The last build's outputs, read by the deploy and run stages."""
    record = _mkdir(settings.state_dir) / "release.json"
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True))
    tmp.replace(record)


def recorded(settings: P4Settings) -> dict[str, Any]:
    record = settings.state_dir / "release.json"
    if not record.is_file():
        raise P4Error(
            f"no release has been built here ({record} is missing)", "run the build stage: `python release.py build`"
        )
    return json.loads(record.read_text())


# ## prefect.yaml's build and push steps
# `prefect deploy` imports these by name (release.build_step), so it runs with
# this folder on PYTHONPATH (deploy.py sets it). Their outputs are
# templated into the deployments: {{ build.release }}, {{ push.code_dir }}, ...
def build_step() -> dict[str, Any]:
    return build(load_settings())


def push_step() -> dict[str, Any]:
    settings = load_settings()
    built = recorded(settings)
    if built["release"] != identify(settings).id:
        built = build(settings)
    return push(settings, built)


if __name__ == "__main__":
    from cli import main

    sys.exit(main())
