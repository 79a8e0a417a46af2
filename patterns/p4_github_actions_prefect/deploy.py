"""The deploy stage: prefect.yaml checked without a server (`validate`, also
the pull request's dry run), the work pool made ready, `prefect deploy --all`,
then a check that Prefect holds this release.

    python release.py validate   every deployment in prefect.yaml, checked
    python release.py deploy     prefect deploy --all, then check versions and pool

Prefect owns what is deployed (deployments, schedules, the work pool); this
module only asks it to register what prefect.yaml declares, for the release
the build stage recorded (release.py), and refuses to deploy a folder that
changed since that build.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from errors import P4Error, say
from release import identify, recorded
from settings import PATTERN_DIR, P4Settings

PREFECT_FILE = PATTERN_DIR / "prefect.yaml"


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
def prefect_client():
    from prefect import get_client

    return get_client(sync_client=True)


# Prefect Cloud instead of a server of your own: the workspace's API URL and an API key.
PREFECT_CLOUD = "https://api.prefect.cloud/"
CLOUD_WORKSPACE_URL = re.compile(r"https://api\.prefect\.cloud/api/accounts/[0-9a-f-]{36}/workspaces/[0-9a-f-]{36}")


def check_cloud(settings: P4Settings) -> bool:
    """True for a Prefect Cloud workspace, once its URL and PREFECT_API_KEY can work."""
    url = settings.prefect_api_url.rstrip("/")
    if not url.startswith(PREFECT_CLOUD):
        return False
    if not CLOUD_WORKSPACE_URL.fullmatch(url):
        raise P4Error(
            f"PREFECT_API_URL={url} is not a Prefect Cloud workspace's API URL",
            "use https://api.prefect.cloud/api/accounts/<account id>/workspaces/<workspace id> "
            "(`prefect cloud workspace ls` lists them)",
        )
    if settings.prefect_api_auth_string:
        raise P4Error("PREFECT_API_AUTH_STRING is set, and Prefect Cloud takes an API key", "unset it")
    if not os.environ.get("PREFECT_API_KEY"):
        raise P4Error(
            f"PREFECT_API_URL is a Prefect Cloud workspace ({url}) and PREFECT_API_KEY is not set",
            "create a service account's API key in the workspace and set the secret PREFECT_API_KEY",
        )
    return True


def check_prefect(settings: P4Settings) -> None:
    import httpx

    cloud = check_cloud(settings)
    url = settings.prefect_api_url.rstrip("/") + "/health"
    headers = {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"} if os.environ.get("PREFECT_API_KEY") else {}
    try:
        httpx.get(url, timeout=settings.connect_timeout, headers=headers).raise_for_status()
    except httpx.HTTPError as exc:
        raise P4Error(
            f"the Prefect API at {settings.prefect_api_url} does not answer ({exc})",
            "start it (`make up`) or set PREFECT_API_URL (and PREFECT_API_KEY for Prefect Cloud)",
        ) from None
    if cloud:
        return
    # A self-hosted server with an auth string (the local and compose stacks): refused here, named.
    auth = settings.prefect_api_auth_string
    headers = headers or ({"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {})
    response = httpx.get(
        url.removesuffix("/health") + "/admin/version", timeout=settings.connect_timeout, headers=headers
    )
    if response.status_code in (401, 403):
        raise P4Error(
            f"the Prefect API at {settings.prefect_api_url} refused the request ({response.status_code})",
            "set PREFECT_API_AUTH_STRING to the server's (make exports the local stack's; "
            "`make -s env` prints it), or PREFECT_API_KEY for Prefect Cloud",
        )


def ensure_work_pool(settings: P4Settings, name: str, mode: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    wanted = "docker" if mode == "image" else "process"
    with prefect_client() as client:
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
    check_prefect(settings)
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
    env = (
        os.environ
        | {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PATTERN_DIR), os.environ.get("PYTHONPATH")])),
            "P4_BUILD": built["mode"],  # the build steps reuse what the build stage made
            "P4_WORK_POOL": pool,
        }
        | settings.prefect_env()
    )
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)]
    say(f"deploy: {' '.join(command[1:])} (work pool {pool})")
    result = subprocess.run(command, cwd=PATTERN_DIR, env=env, stdout=sys.stderr)
    if result.returncode != 0:
        raise P4Error(f"`prefect deploy` failed (exit {result.returncode})", "read its output above")
    deployed = check_deployments(built["release"], pool, declared)
    return {"release": built["release"], "work_pool": pool, "deployments": deployed}


def check_deployments(release_id: str, pool: str, declared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every deployment `validate()` found in prefect.yaml exists with this
    release as its version."""
    problems, found = [], []
    with prefect_client() as client:
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
            if deployment.version != release_id or deployment.work_pool_name != pool:
                problems.append(
                    f"{found[-1]['name']} has version {deployment.version} on pool {deployment.work_pool_name}"
                )
    if problems:
        raise P4Error(f"deploy did not register release {release_id} on {pool}: {'; '.join(problems)}", "deploy again")
    return found
