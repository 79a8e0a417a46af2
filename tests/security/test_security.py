"""The security battery on the local tier (`make test-security`; `make test` runs it
too): every endpoint refuses a request without credentials and with wrong ones,
a deployment cannot be created without the auth string, nothing listens beyond
127.0.0.1, the generated secrets are this user's only, and `make lineage` does
not hand its ID to the shell. The compose tier's half is in tests/compose.
"""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Stack, listening, process_tree

pytestmark = [pytest.mark.stack, pytest.mark.security]


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def test_prefect_refuses_requests_without_the_auth_string(stack: Stack) -> None:
    url = f"{stack.prefect}/admin/version"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=basic("admin:wrong"), timeout=10).status_code == 401
    assert httpx.get(url, headers=stack.prefect_headers, timeout=10).status_code == 200
    # Only the health probe is open (what supervisord's and compose's checks read).
    assert httpx.get(f"{stack.prefect}/health", timeout=10).status_code == 200


def test_a_deployment_without_the_auth_string_is_refused(stack: Stack) -> None:
    """The attack the issue names: a deployment whose job a worker would run."""
    name = f"intruder-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "flow_id": str(uuid.uuid4()), "work_pool_name": "p3-metaflow"}
    anonymous = httpx.post(f"{stack.prefect}/deployments/", json=body, timeout=10)
    wrong = httpx.post(f"{stack.prefect}/deployments/", json=body, headers=basic("admin:wrong"), timeout=10)
    # The right auth string but no CSRF token (what a page in a browser could send): refused too.
    auth = {"Authorization": stack.prefect_headers["Authorization"]}
    no_csrf = httpx.post(f"{stack.prefect}/deployments/", json=body, headers=auth, timeout=10)
    for response in (anonymous, wrong, no_csrf):
        assert response.status_code in (401, 403), response.text
    assert "CSRF" in no_csrf.text
    found = stack.prefect_post("deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    assert found == [], "a refused request created a deployment"


def test_prefect_allows_only_its_ui_origin(stack: Stack) -> None:
    def preflight(origin: str) -> str | None:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        response = httpx.options(f"{stack.prefect}/flows/filter", headers=headers, timeout=10)
        return response.headers.get("access-control-allow-origin")

    ui = stack.prefect.removesuffix("/api")
    assert preflight(ui) == ui
    assert preflight("http://evil.example") is None


def test_mlflow_refuses_requests_without_credentials(stack: Stack) -> None:
    url = f"{stack.mlflow}/api/2.0/mlflow/experiments/search"
    params = {"max_results": 1}
    assert httpx.get(url, params=params, timeout=10).status_code == 401
    assert httpx.get(url, params=params, auth=("admin", "wrong"), timeout=10).status_code == 401
    assert httpx.get(url, params=params, auth=stack.mlflow_auth, timeout=10).status_code == 200
    # The artifact proxy (models are downloaded through it) is closed too.
    artifacts = f"{stack.mlflow}/api/2.0/mlflow-artifacts/artifacts"
    assert httpx.get(artifacts, timeout=10).status_code == 401


def test_s3_refuses_anonymous_and_wrong_keys(stack: Stack) -> None:
    anonymous = boto3.client(
        "s3",
        endpoint_url=stack.env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )
    for client in (anonymous, stack.s3("patterns-local", "patterns-local-secret")):
        with pytest.raises(ClientError) as refused:
            client.list_objects_v2(Bucket="mlflow")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert stack.s3().list_objects_v2(Bucket="mlflow")["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_seaweedfs_internal_ports_refuse_unsigned_requests(stack: Stack) -> None:
    """The filer's HTTP API would bypass the S3 identities, and the volume server holds
    the bytes: both want a JWT signed with the stack's key (security.toml)."""
    base = int(stack.env["STACK_SEAWEED_PORT_BASE"])
    filer, volume = f"http://127.0.0.1:{base + 4}", f"http://127.0.0.1:{base + 2}"
    assert httpx.get(f"{filer}/buckets/", timeout=10).status_code == 401
    put = httpx.put(f"{filer}/buckets/mlflow/planted.txt", content=b"x", timeout=10)
    assert put.status_code == 401, put.text
    assert httpx.post(f"{volume}/1,01637037d6", files={"file": b"x"}, timeout=10).status_code == 401
    assert "planted.txt" not in str(stack.s3().list_objects_v2(Bucket="mlflow").get("Contents", []))


def test_the_keys_are_generated_and_this_users_only(stack: Stack) -> None:
    secrets = stack.state_dir / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(stack.state_dir.stat().st_mode) == 0o700
    for name in ("supervisord.conf", "security.toml", "s3-identities.json", "mlflow/auth.ini"):
        assert stat.S_IMODE((stack.state_dir / name).stat().st_mode) == 0o600, name
    assert stack.env["S3_ACCESS_KEY_ID"] not in ("patterns-local", "patterns-test")
    assert len(stack.env["MLFLOW_TRACKING_PASSWORD"]) >= 32
    assert f"S3_ACCESS_KEY_ID={stack.env['S3_ACCESS_KEY_ID']}" in secrets.read_text()


def test_nothing_listens_beyond_loopback(stack: Stack) -> None:
    """Every listening socket of every process under this stack's supervisord
    (SeaweedFS's internal ports, Prefect, MLflow, the workers), from /proc."""
    supervisord = int((stack.state_dir / "supervisord.pid").read_text())
    sockets = listening(process_tree(supervisord))
    ports = {port for _, _, port in sockets}
    assert {int(stack.env[f"STACK_{name}_PORT"]) for name in ("PREFECT", "MLFLOW", "S3")} <= ports, sockets
    beyond = [(pid, address, port) for pid, address, port in sockets if address not in ("127.0.0.1", "::1")]
    assert beyond == [], f"listening beyond loopback (pid, address, port): {beyond}"


def test_a_quote_in_the_lineage_id_is_an_error_not_a_command(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for given in (f"x'; touch {marker}; echo '", f'x"; touch {marker}; echo "', f"x`touch {marker}`"):
        done = stack.make("lineage", f"ID={given}")
        assert done.returncode != 0, done.output
        assert "is not an id this command knows" in done.stderr, done.output
    assert not marker.exists(), "the shell ran a command from ID"
