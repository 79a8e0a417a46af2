"""Pattern 4's image path against a real Docker engine and the local stack
(marker `docker`, run by `make test-compose`, which starts an engine when none
answers): with `P4_BUILD=image`, the build, deploy and run stages of `make
pattern-4` build the flow image air-gapped where no registry answers, deploy it
to a Docker work pool, and a Docker worker runs retraining and batch scoring
inside it; with Docker answering and
no base image to build from, the automatic mode ships source and says why;
an explicit image build that cannot succeed stops with the reason.

Asserts on what the cycle left: the image on the engine (user, labels, the
lock's packages), the work pool and deployments in Prefect, and the model
card on S3, whose fields only a run inside that image can write."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PATTERNS, REPO, Stack, parse_result, run, wait_for

pytestmark = pytest.mark.docker

P4 = PATTERNS / "p4_github_actions_prefect"
DEPLOYMENTS = ("p4-retrain/p4-retrain", "p4-batch-score/p4-batch-score")
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
# The Dockerfile's `ARG BASE_IMAGE=` (image.py reads it the same way).
DOCKERFILE = PATTERNS / "p4_github_actions_prefect" / "Dockerfile"
DEFAULT_BASE = re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)[1]


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def registry_answers() -> bool:
    import socket

    try:
        socket.create_connection(("registry-1.docker.io", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[None]:
    """A Docker engine: the one that answers, or dockerd started as `make test-compose` does."""
    started = run(["bash", str(REPO / "infra/compose/compose.sh"), "engine"], env=stack.env, timeout=600)
    if started.returncode != 0:
        pytest.skip(f"no Docker engine can be started here: {started.output.strip()[-500:]}")
    yield


# Stages 3-5 of `make pattern-4`: build, deploy, run. Lint and test (stages 1-2) do not
# depend on how the release ships; test_p4.py's cycle (p4_cycle) runs all five.
STAGES = ("p4-build", "p4-deploy", "p4-worker", "p4-run")


@pytest.fixture(scope="module")
def source_release(stack: Stack) -> dict[str, str]:
    """This commit shipped as source first, as `make patterns` does where no image can be built."""
    done = stack.make(*STAGES, env={"P4_BUILD": "source"}, timeout=900)
    assert done.returncode == 0, done.output[-6000:]
    return parse_result(done.stdout)


@pytest.fixture(scope="module")
def image_cycle(stack: Stack, engine: None, source_release: dict[str, str]) -> dict:
    """The commit's image cycle, after its source release: a run of its own, not the source's."""
    done = stack.make(*STAGES, env={"P4_BUILD": "image"}, timeout=1800)
    assert done.returncode == 0, done.output[-6000:]
    return {"output": done.output, "result": parse_result(done.stdout)}


def test_the_image_cycle_runs_both_flows_inside_the_image(stack: Stack, image_cycle: dict) -> None:
    out, result = image_cycle["output"], image_cycle["result"]
    release = result["release"]
    assert release.startswith(HEAD) and result["mode"] == "image" and result["status"] == "ok"
    assert result["state"] == "COMPLETED" and result["new_run"] == "true"
    name = f"{stack.env['P4_IMAGE_REPO']}:{release}"
    if not registry_answers():
        assert "no registry answers, so its image builds FROM local/debian:bookworm" in out

    # The image: this release's, built from this commit, running as a user, with the lock's packages.
    inspected = json.loads(docker("image", "inspect", name).stdout)[0]
    image_id = inspected["Id"]
    assert inspected["Config"]["User"] == "flows"
    assert inspected["Config"]["Labels"]["org.opencontainers.image.revision"] == HEAD
    assert f"P4_IMAGE_RELEASE={release}" in inspected["Config"]["Env"]
    versions = docker(
        "run", "--rm", "--network", "none", name, "python", "-c",
        "import importlib.metadata as m, os; print(os.getuid(), m.version('prefect'), m.version('scikit-learn'))",
    )  # fmt: skip
    lock = (P4 / "uv.lock").read_text()
    uid, prefect, sklearn = versions.stdout.split()
    assert uid == "10001" and prefect == "3.8.8", versions.stdout + versions.stderr
    assert f'name = "scikit-learn"\nversion = "{sklearn}"' in lock

    # Prefect: a Docker pool that runs local images on the host network; both deployments on it.
    pool = stack.prefect_get("work_pools/p4-docker")
    props = pool["base_job_template"]["variables"]["properties"]
    assert pool["type"] == "docker"
    assert props["image_pull_policy"]["default"] == "Never" and props["network_mode"]["default"] == "host"
    for deployment_name in DEPLOYMENTS:
        d = stack.prefect_get(f"deployments/name/{deployment_name}")
        assert d["version"] == release and d["work_pool_name"] == "p4-docker"
        assert d["job_variables"]["image"] == name and d["job_variables"]["env"]["P4_IMAGE_ID"] == image_id
        assert d["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect/p4"}}
        ]
    run_ = stack.prefect_get(f"flow_runs/{result['retrain_run']}")
    assert run_["state"]["type"] == "COMPLETED"
    assert run_["labels"]["prefect.worker.name"].startswith("p4-docker-worker-pid")

    # The card: written inside the image. Only the image carries P4_IMAGE_RELEASE, its code
    # folder and its venv; the id comes from the deployment and is the image's.
    card = json.loads(
        stack.s3()
        .get_object(Bucket="p4-models", Key=f"models/{release}/{result['retrain_run']}/model.json")["Body"]
        .read()
    )
    assert card["git_sha"] == HEAD and card["release"] == release
    assert card["image_id"] == image_id and card["artifact"] == name
    assert card["image_release"] == release and card["uid"] == 10001
    assert card["code_dir"] == "/opt/prefect/p4" and card["python"].startswith("/opt/prefect/venv/")
    assert f"ran in image    {name}  {image_id}  (uid 10001)" in out

    # Batch scoring ran in the image too, with that model.
    predictions = stack.s3().get_object(Bucket="p4-models", Key=f"predictions/{release}/{result['score_run']}.csv")
    assert len(predictions["Body"].read().decode().splitlines()) == int(result["rows"]) + 1 == 41
    score = stack.prefect_get(f"flow_runs/{result['score_run']}")
    assert score["labels"]["prefect.worker.name"].startswith("p4-docker-worker-pid")
    # The pool removes finished containers (Docker does, once the run has reported its
    # final state): none of this release is left behind.
    wait_for(
        lambda: docker("ps", "--all", "--filter", f"ancestor={name}", "--format", "{{.Names}}").stdout.strip() == "",
        60,
        "the finished flow-run containers to be removed",
    )


def test_one_commit_shipped_as_source_then_as_its_image_runs_in_each(stack: Stack, image_cycle: dict) -> None:
    """A run of the commit's source snapshot never stands in for a run of its image,
    nor the other way round; a retry of either reuses its own run."""
    release, image_run = image_cycle["result"]["release"], image_cycle["result"]["retrain_run"]
    source = stack.make(*STAGES, env={"P4_BUILD": "source"})
    assert source.returncode == 0, source.output[-5000:]
    shipped = parse_result(source.stdout)
    # A source run of this commit (new here, or one an earlier test of the session made),
    # never the image's: its card checked out as a source card (exit 0).
    assert shipped["release"] == release and shipped["mode"] == "source" and shipped["status"] == "ok"
    assert shipped["retrain_run"] != image_run
    again = stack.make(*STAGES, env={"P4_BUILD": "image"})
    assert again.returncode == 0, again.output[-5000:]
    rerun = parse_result(again.stdout)
    assert rerun["mode"] == "image" and rerun["new_run"] == "false" and rerun["retrain_run"] == image_run
    assert "not running it twice" in again.output


def test_auto_mode_with_docker_and_no_base_to_build_from_ships_source_and_says_why(
    stack: Stack, engine: None, image_cycle: dict
) -> None:
    """The sequence that used to fail: `make test-all` leaves dockerd running, then
    `make patterns` (P4_BUILD unset) must not try an image it cannot build (its build
    stage decides: stages 3-5 here)."""
    if docker("image", "inspect", DEFAULT_BASE).returncode == 0 or registry_answers():
        pytest.skip(f"{DEFAULT_BASE} is on this engine or its registry answers: auto builds an image here")
    env = {k: v for k, v in stack.env.items() if k != "P4_BUILD"}
    # Another release than the image cycle's: for that one an image exists, and auto would run it.
    done = run(["make", "--no-print-directory", *STAGES, "P4_GIT_SHA=" + "a" * 40], env=env, timeout=900)
    assert done.returncode == 0, done.output[-5000:]
    assert (
        f"P4_BUILD=auto chose SOURCE: base image {DEFAULT_BASE} is not on this Docker engine "
        "and its registry registry-1.docker.io does not answer"
    ) in done.output
    result = parse_result(done.stdout)
    assert result["mode"] == "source" and result["status"] == "ok" and result["release"] == "a" * 40
    # The process worker ran it (the Docker worker of the image cycle is still up, on its own pool).
    run_ = stack.prefect_get(f"flow_runs/{result['retrain_run']}")
    assert run_["labels"]["prefect.worker.name"].startswith("p4-worker-pid")
    assert stack.prefect_get("deployments/name/p4-retrain/p4-retrain")["work_pool_name"] == "p4-process"


def test_an_image_build_that_cannot_succeed_stops_with_the_reason(stack: Stack, engine: None) -> None:
    if registry_answers():
        pytest.skip("Docker Hub answers here: the build would try to pull the missing base")
    record_file = Path(stack.env["P4_STATE_DIR"]) / "release.json"
    record = record_file.read_text() if record_file.exists() else None
    done = stack.make(
        "p4-build", env={"P4_BUILD": "image", "P4_BASE_IMAGE": "acme/no-such-base:1", "P4_GIT_SHA": "b" * 40}
    )
    assert done.returncode != 0 and "Traceback" not in done.output
    assert (
        "error: P4_BUILD=image, but base image acme/no-such-base:1 is not on this Docker engine "
        "and its registry registry-1.docker.io does not answer"
    ) in done.output
    assert "fix: " in done.output and "P4_BUILD=source" in done.output
    # Nothing half-written: no image, and the last build's record is as it was.
    assert docker("image", "inspect", f"{stack.env['P4_IMAGE_REPO']}:{'b' * 40}").returncode != 0
    assert (record_file.read_text() if record_file.exists() else None) == record

    # The air-gapped preparation failing stops the stage before release.py builds anything.
    prepared = stack.make(
        "p4-build", env={"P4_BUILD": "image", "STACK_COMPOSE_AIRGAP": "bogus", "P4_GIT_SHA": "b" * 40}
    )
    assert prepared.returncode != 0 and "STACK_COMPOSE_AIRGAP=bogus is not one of auto, true, false" in prepared.output
    assert "build:" not in prepared.output
    assert (record_file.read_text() if record_file.exists() else None) == record
