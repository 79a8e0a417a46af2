"""Pattern 4's release tooling: the stages after lint and test, the same in
GitHub Actions and in `make pattern-4`.

    python release.py build      build (and push) this commit's release
    python release.py validate   check every deployment in prefect.yaml (no server needed)
    python release.py deploy     `prefect deploy --all` from prefect.yaml, then check the result
    python release.py run        run p4-retrain, wait, check the model; then p4-batch-score

A release is one git commit: its id is the full SHA (with `-dirty.<hash>` when
this folder has uncommitted changes, or `src.<hash>` outside git). It is the
image tag, the deployment version, a tag on every flow run and a field of the
model card, so every run and model traces back to a commit.

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

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import image as docker_image
from errors import P4Error
from settings import PATTERN_DIR, P4Settings, load_settings

PREFECT_FILE = PATTERN_DIR / "prefect.yaml"
# What a release contains: everything a flow run needs, nothing a developer left around.
RELEASE_FILES = ("*.py", "prefect.yaml", "pyproject.toml", "uv.lock", "Dockerfile", ".dockerignore", "data/*.csv")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def say(message: str) -> None:
    # Progress goes to stderr: prefect.yaml's steps and a CI log both show it,
    # and stdout stays for the summary and the Result line.
    print(message, file=sys.stderr, flush=True)


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
    sha, dirty = settings.git_sha, False
    if sha is None:
        sha = _git("rev-parse", "HEAD")
    if sha is not None and settings.git_sha is None:
        dirty = bool(_git("status", "--porcelain", "--", *files))
    if sha is None:
        return Release(f"src.{content[:12]}", None, True, content, tuple(files))
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise P4Error(f"P4_GIT_SHA={sha!r} is not a full 40-character git commit SHA", "pass `git rev-parse HEAD`")
    return Release(f"{sha}-dirty.{content[:8]}" if dirty else sha, sha, dirty, content, tuple(files))


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PATTERN_DIR, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


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
# this folder on PYTHONPATH (`release.py deploy` sets it). Their outputs are
# templated into the deployments: {{ build.release }}, {{ push.code_dir }}, ...
def build_step() -> dict[str, Any]:
    return build(load_settings())


def push_step() -> dict[str, Any]:
    settings = load_settings()
    built = recorded(settings)
    if built["release"] != identify(settings).id:
        built = build(settings)
    return push(settings, built)


# ## Validate: what `prefect deploy` would register, checked without a server
def load_prefect_file(path: Path = PREFECT_FILE) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise P4Error(f"cannot read {path}: {exc}", "fix the YAML") from None


def validate(path: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """Every deployment: a unique name, an importable flow, parameters its flow
    accepts, valid schedules, a work pool; every step resolvable. Returns one
    summary per deployment; raises P4Error listing every problem."""
    from prefect.client.schemas.schedules import construct_schedule
    from prefect.deployments.steps.core import _get_function_for_step
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate as validate_schema

    config = load_prefect_file(path)
    problems: list[str] = []
    if str(PATTERN_DIR) not in sys.path:  # the build and push steps are this folder's modules
        sys.path.insert(0, str(PATTERN_DIR))
    for section in ("build", "push", "pull"):
        for step in config.get(section) or []:
            for name in step:
                try:
                    _get_function_for_step(name)
                except (ImportError, AttributeError) as exc:
                    problems.append(f"{section} step {name!r} cannot be imported ({exc})")
    deployments = config.get("deployments") or []
    if len(deployments) < 2:
        problems.append(f"{path.name} declares {len(deployments)} deployment(s); this pattern ships two")
    names = [d.get("name") for d in deployments]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"deployment name {name!r} is used twice")
    summaries = []
    for spec in deployments:
        label = f"deployment {spec.get('name')!r}"
        entrypoint = spec.get("entrypoint", "")
        try:
            flow = load_flow_from_entrypoint(str(PATTERN_DIR / entrypoint))
        except Exception as exc:  # noqa: BLE001 - any import error is the finding
            problems.append(f"{label}: entrypoint {entrypoint!r} does not load a flow ({type(exc).__name__}: {exc})")
            continue
        schema = parameter_schema(flow).model_dump_for_openapi()
        params = spec.get("parameters") or {}
        unknown = sorted(set(params) - set(schema.get("properties", {})))
        if unknown:
            problems.append(f"{label}: parameters {unknown} are not parameters of flow {flow.name!r}")
        else:
            try:
                validate_schema(params, schema, raise_on_error=True, ignore_required=True)
            except Exception as exc:  # noqa: BLE001 - jsonschema's error is the finding
                problems.append(f"{label}: parameters {params} do not fit flow {flow.name!r}: {exc}")
        schedules = spec.get("schedules") or []
        for schedule in schedules:
            try:
                construct_schedule(
                    **{k: schedule[k] for k in ("cron", "interval", "rrule", "timezone") if k in schedule}
                )
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{label}: schedule {schedule} is invalid ({exc})")
        if not (spec.get("work_pool") or {}).get("name"):
            problems.append(f"{label}: no work_pool.name")
        summaries.append({"name": spec.get("name"), "flow": flow.name, "parameters": params, "schedules": schedules})
    if problems:
        raise P4Error(f"{path.name} is not deployable:\n  - " + "\n  - ".join(problems), "fix the items listed")
    return summaries


# ## Deploy
def _client():
    from prefect import get_client

    return get_client(sync_client=True)


def _check_prefect(settings: P4Settings) -> None:
    import httpx

    url = settings.prefect_api_url.rstrip("/") + "/health"
    headers = {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"} if os.environ.get("PREFECT_API_KEY") else {}
    try:
        httpx.get(url, timeout=settings.connect_timeout, headers=headers).raise_for_status()
    except httpx.HTTPError as exc:
        raise P4Error(
            f"the Prefect API at {settings.prefect_api_url} does not answer ({exc})",
            "start it (`make up`) or set PREFECT_API_URL (and PREFECT_API_KEY for Prefect Cloud)",
        ) from None


def ensure_work_pool(settings: P4Settings, name: str, mode: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    wanted = "docker" if mode == "image" else "process"
    with _client() as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            if not settings.create_work_pool:
                raise P4Error(
                    f"work pool {name!r} does not exist on {settings.prefect_api_url}",
                    "create it (prefect work-pool create), or set P4_CREATE_WORK_POOL=true",
                ) from None
            template = _docker_pool_template(settings) if wanted == "docker" else None
            client.create_work_pool(WorkPoolCreate(name=name, type=wanted, base_job_template=template or {}))
            say(f"deploy: created work pool {name!r} (type {wanted})")
            return
    if mode == "source" and pool.type != "process":
        raise P4Error(
            f"work pool {name!r} is of type {pool.type!r}, but a source release needs a process pool",
            "set P4_WORK_POOL to a process pool, or build an image (P4_BUILD=image)",
        )
    if mode == "image" and pool.type == "process":
        raise P4Error(
            f"work pool {name!r} is a process pool, but an image release needs a Docker or Kubernetes pool",
            "set P4_WORK_POOL to such a pool, or ship a source release (P4_BUILD=source)",
        )


def _docker_pool_template(settings: P4Settings) -> dict[str, Any]:
    """The Docker worker's default job template, adjusted when the pool is created
    here. Against a Prefect server on this host (the local stack), containers
    reach it and S3 through the host's network (Linux) or host.docker.internal
    (Docker Desktop, which has no host network; the worker maps the API URL
    itself), get the local stack's keys, and run an image that was not pushed.
    A pool you manage (Prefect Cloud) is never changed: configure its
    networking and credentials there."""
    from urllib.parse import urlsplit

    from prefect_docker.worker import DockerWorker

    template = DockerWorker.get_default_base_job_template()
    if urlsplit(settings.prefect_api_url).hostname in ("127.0.0.1", "localhost"):
        props = template["variables"]["properties"]
        env = settings.s3_env() | settings.flow_run_env()
        if sys.platform == "linux":
            props["network_mode"]["default"] = "host"
        else:
            env = {k: re.sub(r"//(127\.0\.0\.1|localhost)\b", "//host.docker.internal", v) for k, v in env.items()}
        props["env"]["default"] = env
        if not settings.push_image:
            props["image_pull_policy"]["default"] = "Never"
        props["auto_remove"]["default"] = True  # the run's logs are in Prefect; no exited containers pile up
    return template


def deploy(settings: P4Settings) -> dict[str, Any]:
    _check_prefect(settings)
    built = recorded(settings)
    current = identify(settings)
    if built["release"] != current.id:
        raise P4Error(
            f"the last build is release {built['release']}, but this folder is now release {current.id}",
            "run the build stage again (`python release.py build`) so deploy ships what was tested",
        )
    declared = validate()
    pool = built["work_pool"]
    ensure_work_pool(settings, pool, built["mode"])
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PATTERN_DIR), os.environ.get("PYTHONPATH")])),
        "P4_BUILD": built["mode"],  # the build steps reuse what the build stage made
        "P4_WORK_POOL": pool,
        "PREFECT_API_URL": settings.prefect_api_url,
    }
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)]
    say(f"deploy: {' '.join(command[1:])} (work pool {pool})")
    result = subprocess.run(command, cwd=PATTERN_DIR, env=env, stdout=sys.stderr)
    if result.returncode != 0:
        raise P4Error(f"`prefect deploy` failed (exit {result.returncode})", "read its output above")
    deployed = check_deployments(built["release"], pool, declared)
    return {"release": built["release"], "work_pool": pool, "deployments": deployed}


def check_deployments(release: str, pool: str, declared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every deployment `validate()` found in prefect.yaml exists with this
    release as its version."""
    problems, found = [], []
    with _client() as client:
        for item in declared:
            deployment = client.read_deployment_by_name(f"{item['flow']}/{item['name']}")
            found.append(
                {
                    "name": f"{item['flow']}/{item['name']}",
                    "id": str(deployment.id),
                    "version": deployment.version,
                    "pool": deployment.work_pool_name,
                }
            )
            if deployment.version != release or deployment.work_pool_name != pool:
                problems.append(
                    f"{found[-1]['name']} has version {deployment.version} on pool {deployment.work_pool_name}"
                )
    if problems:
        raise P4Error(f"deploy did not register release {release} on {pool}: {'; '.join(problems)}", "deploy again")
    return found


# ## Run: trigger a deployment, wait, verify what it produced
def run_key(name: str, built: dict[str, Any], attempt: int) -> str:
    """The idempotency key of a run: the deployment, the release and what ships it.
    One commit can ship as a source snapshot or as an image (and an image can be
    rebuilt): each is a run of its own, so a run of the snapshot never stands in
    for the image's."""
    artifact = f"image-{built['image_id'].removeprefix('sha256:')[:12]}" if built.get("image_id") else "source"
    return f"{name}:{built['release']}:{artifact}:{attempt}"


def run_and_wait(
    settings: P4Settings, name: str, built: dict[str, Any], parameters: dict[str, Any] | None = None
) -> tuple[Any, bool]:
    """One run of `name` for the built release. A retry of the pipeline (same
    release, same artifact) gets the run that already exists, unless it ended
    badly: then a new attempt."""
    from datetime import UTC, datetime, timedelta

    release = built["release"]
    started = datetime.now(UTC) - timedelta(seconds=5)
    with _client() as client:
        deployment = client.read_deployment_by_name(name)
        if deployment.version != release:
            raise P4Error(
                f"deployment {name} is at release {deployment.version}, not {release}",
                "deploy this release first (`python release.py deploy`)",
            )
        for attempt in range(1, 4):
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters or {}, idempotency_key=run_key(name, built, attempt)
            )
            if run.state.type.value not in ("FAILED", "CRASHED", "CANCELLED"):
                break
            say(f"run: attempt {attempt} of {name} for release {release} ended {run.state.type.value}; trying again")
        new = run.created is not None and run.created >= started
        if not new and run.state.type.value == "COMPLETED":
            say(f"run: {name} already ran for release {release} (flow run {run.name}); not running it twice")
            return run, False
        pool = deployment.work_pool_name
        say(f"run: {name} flow run {run.name} ({run.id}) for release {release}; waiting for a worker of {pool}")
        deadline = time.monotonic() + settings.run_timeout
        while run.state.type.value not in FINAL:
            if time.monotonic() > deadline:
                raise P4Error(
                    f"flow run {run.name} is still {run.state.name} after {settings.run_timeout:.0f} s",
                    f"start a worker for pool {pool!r} (`python worker.py p4-worker`), or raise P4_RUN_TIMEOUT",
                )
            time.sleep(1)
            run = client.read_flow_run(run.id)
    if run.state.type.value != "COMPLETED":
        raise P4Error(
            f"flow run {run.name} ({run.id}) of {name} ended {run.state.name}: {run.state.message}",
            "read the flow run's logs in the Prefect UI; nothing was published by a failed run",
        )
    return run, new


def run(settings: P4Settings) -> dict[str, Any]:
    from store import ModelStore

    _check_prefect(settings)
    built = recorded(settings)
    release = built["release"]
    store = ModelStore(settings)
    store.check()
    retrain_run, new = run_and_wait(settings, settings.run_deployment, built)
    card = store.card(release, str(retrain_run.id))
    expected = {"release": release, "flow_run_id": str(retrain_run.id), "git_sha": built["git_sha"]}
    # An image release ran in that image: the card names its id (from the
    # deployment) and the release the image itself carries (from its build).
    expected["image_id"] = built.get("image_id") or None
    if built["mode"] == "image":
        expected["image_release"] = release
    problems = [
        f"card field {key}={card.get(key)!r}, expected {want!r}"
        for key, want in expected.items()
        if card.get(key) != want
    ]
    if not store.exists(card["model_url"]):
        problems.append(f"{card['model_url']} is missing")
    if problems:
        raise P4Error(f"the model of flow run {retrain_run.name} does not check out: {'; '.join(problems)}", "rerun")
    say(f"run: model {card['model_url']} (accuracy {card['metrics']['accuracy']}) from flow run {retrain_run.name}")
    score_run, _ = run_and_wait(settings, settings.score_deployment, built, parameters={"expect_release": release})
    predictions = store.predictions_url(release, str(score_run.id))
    if not store.exists(predictions):
        raise P4Error(f"batch scoring wrote no {predictions}", "read the p4-batch-score run's logs")
    rows = len(store.read_text(predictions).splitlines()) - 1
    return {
        "release": release,
        "mode": built["mode"],
        "retrain_run": retrain_run,
        "new_run": new,
        "card": card,
        "score_run": score_run,
        "predictions": predictions,
        "rows": rows,
    }


# ## Command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["build", "validate", "deploy", "run"])
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = load_settings()
    os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    try:
        if args.stage == "build":
            built = build(settings)
            pushed = push(settings, built)
            print(f"built release {built['release']} as {built['artifact']}; workers pull it from {pushed['code_dir']}")
        elif args.stage == "validate":
            for item in validate():
                sched = ", ".join(s.get("cron", str(s)) for s in item["schedules"]) or "on demand"
                print(f"ok  {item['flow']}/{item['name']}  params={json.dumps(item['parameters'])}  schedule={sched}")
        elif args.stage == "deploy":
            out = deploy(settings)
            for d in out["deployments"]:
                print(f"deployed {d['name']}  version={d['version']}  pool={d['pool']}  id={d['id']}")
        else:
            out = run(settings)
            base = settings.prefect_api_url.removesuffix("/api")
            print(f"retrain run     {out['retrain_run'].name}  {base}/runs/flow-run/{out['retrain_run'].id}")
            print(f"model           {out['card']['model_url']}  accuracy={out['card']['metrics']['accuracy']}")
            if out["mode"] == "image":
                print(
                    f"ran in image    {out['card']['artifact']}  {out['card']['image_id']}  (uid {out['card']['uid']})"
                )
            print(f"batch-score run {out['score_run'].name}  {out['rows']} rows -> {out['predictions']}")
            print(
                f"Result: pattern=p4 status=ok release={out['release']} mode={out['mode']} "
                f"retrain_run={out['retrain_run'].id} "
                f"new_run={str(out['new_run']).lower()} state={out['retrain_run'].state.type.value} "
                f"model={out['card']['model_url']} accuracy={out['card']['metrics']['accuracy']} "
                f"score_run={out['score_run'].id} rows={out['rows']}"
            )
    except P4Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
