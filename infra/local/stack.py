"""The local tier: SeaweedFS (S3), a Prefect server and an MLflow server, each a
native process on 127.0.0.1 under supervisord.

    python stack.py up       start what is not running, wait until healthy, create buckets
    python stack.py down     stop this stack's supervisord and everything under it
    python stack.py status   one line per service: process state and health
    python stack.py logs     the tail of every service log (or: logs mlflow -n 200)
    python stack.py env      the client-side variables the patterns read, as shell exports
    python stack.py add NAME... --cwd DIR [--pass-env PATTERNS] [--env-file FILE]
                        [--health URL [--health-key KEY]] -- COMMAND...
                             run more programs (a pattern's workers, its services)
                             under this stack's supervisord, `{name}` in COMMAND
                             replaced by each NAME; idempotent; with --health, wait
                             until URL answers 200 (and, with --health-key, until
                             its JSON's KEY.status is "healthy")
    python stack.py remove NAME   stop it and forget it
    python stack.py pid NAME      print its pid (for fault-injection tests)
    python stack.py restart NAME  stop a service (s3, prefect, mlflow) or an added
                                  program, start it again, wait until healthy

Who owns what: supervisord owns the processes (restart on crash, stop with a
timeout and then SIGKILL, since `weed server` ignores SIGTERM for 20+ s); this
script only renders its config, starts it, polls health and talks to it over
its unix socket. State, databases and logs live under STACK_STATE_DIR
(default `.state/local` at the repository root, ignored by git), so `down`
stops only what this state folder's supervisord started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import credentials  # the generated secrets (standard library only; make reads them too)
import httpx
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # prefect, mlflow, weed, supervisord live in this environment
HOST = "127.0.0.1"  # the house rule: servers bind to loopback only


# Each secret of the stack: its settings field, and its name in the environment and secrets.env.
SECRET_FIELDS = {
    "s3_access_key_id": "S3_ACCESS_KEY_ID",
    "s3_secret_access_key": "S3_SECRET_ACCESS_KEY",
    "prefect_auth_string": "PREFECT_API_AUTH_STRING",
    "mlflow_username": "MLFLOW_TRACKING_USERNAME",
    "mlflow_password": "MLFLOW_TRACKING_PASSWORD",
    "mlflow_flask_secret_key": "STACK_MLFLOW_FLASK_SECRET_KEY",
    "seaweed_jwt_key": "STACK_SEAWEED_JWT_KEY",
}


class StackError(RuntimeError):
    """A failure with a message that says what is wrong and how to fix it."""


class StackSettings(BaseSettings):
    """Every knob of the local stack; environment variables win (prefix STACK_)."""

    model_config = SettingsConfigDict(env_prefix="STACK_", extra="ignore")

    state_dir: Path = REPO_ROOT / ".state" / "local"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    s3_port: int = 8333
    # SeaweedFS also needs master, volume and filer ports plus their gRPC ports:
    # seven consecutive ports from this base.
    seaweed_port_base: int = 18330
    buckets: list[str] = ["dvc", "mlflow", "p2-data", "metaflow", "p4-models"]
    start_timeout: float = 180.0
    # Seconds supervisord waits after SIGTERM before SIGKILL.
    stop_timeout: int = 8
    # SeaweedFS's filer begins "Gracefully stopping gRPC server" on SIGTERM and
    # never ends it (its own master streams stay open), so every stop of s3
    # ended in SIGKILL after stop_timeout anyway: it gets that SIGKILL sooner.
    s3_stop_timeout: int = 2
    # Keys and passwords: the environment's, else the state folder's secrets.env,
    # generated on first use (credentials.py; `stack.py env` prints them).
    s3_access_key_id: str | None = Field(
        None, validation_alias=AliasChoices("STACK_S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID")
    )
    s3_secret_access_key: str | None = Field(
        None, validation_alias=AliasChoices("STACK_S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY")
    )
    prefect_auth_string: str | None = Field(None, validation_alias="PREFECT_API_AUTH_STRING")
    mlflow_username: str | None = Field(None, validation_alias="MLFLOW_TRACKING_USERNAME")
    mlflow_password: str | None = Field(None, validation_alias="MLFLOW_TRACKING_PASSWORD")
    mlflow_flask_secret_key: str | None = Field(None, validation_alias="STACK_MLFLOW_FLASK_SECRET_KEY")
    seaweed_jwt_key: str | None = Field(None, validation_alias="STACK_SEAWEED_JWT_KEY")

    @model_validator(mode="after")
    def _generated_secrets(self) -> StackSettings:
        if any(getattr(self, field) is None for field in SECRET_FIELDS):
            generated = credentials.read(credentials.ensure(self.state_dir))
            for field, name in SECRET_FIELDS.items():
                if getattr(self, field) is None:
                    setattr(self, field, generated[name])
        for field in SECRET_FIELDS:
            if not getattr(self, field):
                raise ValueError(f"{field} is empty: unset it to use the generated one, or set a value")
        return self

    @field_validator("buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [b.strip() for b in value.split(",") if b.strip()]
        return value

    @field_validator("buckets")
    @classmethod
    def _valid_buckets(cls, value: list[str]) -> list[str]:
        for name in value:
            if not (3 <= len(name) <= 63) or name != name.lower() or "_" in name:
                raise ValueError(
                    f"bucket name {name!r} is not a valid S3 bucket name "
                    "(3-63 characters, lowercase, no underscores): fix STACK_BUCKETS"
                )
        return value

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived locations -------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.state_dir / "supervisord.conf"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "supervisor.sock"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "supervisord.pid"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def programs_dir(self) -> Path:
        return self.state_dir / "programs"

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    command: list[str]
    environment: dict[str, str]
    health_url: str
    ports: dict[str, int]  # every port it binds, with the variable that moves it


def services(s: StackSettings) -> list[Service]:
    """The three services, in start order."""
    b = s.seaweed_port_base
    quiet = {"DO_NOT_TRACK": "true"}
    s3_creds = {
        "AWS_ACCESS_KEY_ID": s.s3_access_key_id,
        "AWS_SECRET_ACCESS_KEY": s.s3_secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    weed = Service(
        name="s3",
        title="SeaweedFS S3",
        command=[
            str(BIN / "weed"),
            "server",
            f"-dir={s.state_dir / 'seaweedfs'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={b}",
            f"-master.port.grpc={b + 1}",
            f"-volume.port={b + 2}",
            f"-volume.port.grpc={b + 3}",
            "-filer",
            f"-filer.port={b + 4}",
            f"-filer.port.grpc={b + 5}",
            "-s3",
            f"-s3.port={s.s3_port}",
            f"-s3.port.grpc={b + 6}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Its unix sockets default to /tmp/seaweedfs-*-<port>.sock and are
            # left behind after a SIGKILL: keep them in the state folder.
            f"-filer.localSocket={s.state_dir / 'seaweedfs-filer.sock'}",
            f"-s3.localSocket={s.state_dir / 'seaweedfs-s3.sock'}",
            f"-s3.config={s.state_dir / 's3-identities.json'}",
            # A single master re-elects itself after the election timeout on
            # every start: 10 s by default, 1 s is plenty on one machine.
            "-master.electionTimeout=1s",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
            "-volume.max=0",
        ],
        environment=quiet,
        health_url=f"http://{HOST}:{s.s3_port}/healthz",
        ports={"STACK_S3_PORT": s.s3_port} | {f"STACK_SEAWEED_PORT_BASE (+{i})": b + i for i in range(7)},
    )
    prefect = Service(
        name="prefect",
        title="Prefect server",
        command=[
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            HOST,
            "--port",
            str(s.prefect_port),
            "--analytics-off",
        ],
        environment=quiet
        | {
            "PREFECT_HOME": str(s.state_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": s.prefect_api_url,
            # Every API call but the health probe carries the auth string (the UI asks
            # for it once); writes also need a CSRF token; only the UI's origin is allowed.
            "PREFECT_SERVER_API_AUTH_STRING": s.prefect_auth_string,
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
            "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": f"http://{HOST}:{s.prefect_port}",
            # Concurrency-slot leases on disk (PREFECT_HOME/concurrency_leases),
            # not in memory: a server restart otherwise forgets every lease while
            # the limits' active slots stay taken, so a slot held across a restart
            # is never released and the next run waits on it forever.
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
        },
        health_url=f"{s.prefect_api_url}/health",
        ports={"STACK_PREFECT_PORT": s.prefect_port},
    )
    mlflow = Service(
        name="mlflow",
        title="MLflow server",
        command=[
            str(BIN / "mlflow"),
            "server",
            "--host",
            HOST,
            "--port",
            str(s.mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{s.state_dir / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination",
            "s3://mlflow/artifacts",
            # Basic auth: an admin user created on first start with the generated
            # password (mlflow/auth.ini); every request but /health needs it.
            "--app-name",
            "basic-auth",
        ],
        environment=quiet
        | s3_creds
        | {
            "MLFLOW_S3_ENDPOINT_URL": s.s3_endpoint_url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # The job consumers (seven huey processes) serve GenAI jobs that no
            # pattern uses; on two cores they cost more than they give.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_AUTH_CONFIG_PATH": str(s.state_dir / "mlflow" / "auth.ini"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": s.mlflow_flask_secret_key,
        },
        health_url=f"{s.mlflow_tracking_uri}/health",
        ports={"STACK_MLFLOW_PORT": s.mlflow_port},
    )
    return [weed, prefect, mlflow]


# supervisord ------------------------------------------------------------------
def _quote_env(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"'.replace("%", "%%") for k, v in env.items())


def _program(
    name: str, command: list[str], environment: dict[str, str], directory: Path, priority: int, s: StackSettings
) -> str:
    import shlex

    stop_timeout = s.s3_stop_timeout if name == "s3" else s.stop_timeout

    return f"""[program:{name}]
command={shlex.join(command).replace("%", "%%")}
environment={_quote_env(environment)}
directory={directory}
priority={priority}
autostart=true
autorestart=true
startsecs=2
startretries=3
stopsignal=TERM
stopwaitsecs={stop_timeout}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={s.log_dir / (name + ".log")}
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=2
"""


def render_config(s: StackSettings) -> str:
    parts = [
        f"""[unix_http_server]
file={s.socket_path}
chmod=0700

[supervisord]
logfile={s.log_dir / "supervisord.log"}
pidfile={s.pid_path}
directory={s.state_dir}
childlogdir={s.log_dir}
logfile_maxbytes=10MB
logfile_backups=2

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{s.socket_path}

; Programs added with `stack.py add` (pattern workers), one file each.
[include]
files = {s.programs_dir}/*.conf
"""
    ]
    for priority, svc in enumerate(services(s), start=1):
        parts.append(_program(svc.name, svc.command, svc.environment, s.state_dir, priority, s))
    return "\n".join(parts)


def _rpc(s: StackSettings):
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{s.socket_path}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def _supervisord_pid(s: StackSettings) -> int | None:
    """The pid of this state folder's supervisord if it is alive and answering."""
    try:
        pid = int(s.pid_path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    try:
        _rpc(s).getState()
    except OSError:
        return None
    return pid


def _port_free(port: int) -> bool:
    """Whether a server could listen on `port`. SO_REUSEADDR, as servers set
    it: connections in TIME_WAIT after a restart do not make a port busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _healthy(url: str, key: str = "") -> bool:
    """URL answers 200; with `key`, its JSON body's `key.status` is "healthy" (the
    form of Airflow's /api/v2/monitor/health, one entry per component)."""
    try:
        response = httpx.get(url, timeout=2.0)
        if response.status_code != 200:
            return False
        return not key or str((response.json().get(key) or {}).get("status")) == "healthy"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def _write_identities(s: StackSettings) -> None:
    """SeaweedFS accepts any key unless identities are configured: configure one,
    so a wrong key is rejected here exactly as it would be by a real S3."""
    import json

    identities = {
        "identities": [
            {
                "name": "patterns",
                "credentials": [{"accessKey": s.s3_access_key_id, "secretKey": s.s3_secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path = s.state_dir / "s3-identities.json"
    path.write_text(json.dumps(identities, indent=2))
    path.chmod(0o600)


def _write_seaweed_security(s: StackSettings) -> None:
    """SeaweedFS's security.toml, read from its working directory (the state folder):
    writes and reads on the volume server need a JWT the master signs, and the filer's
    HTTP API (which would bypass the S3 identities) one that only the stack can sign.
    The S3 gateway inside `weed server` signs its own; a client comes in through S3."""
    sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
    path = s.state_dir / "security.toml"
    path.write_text(
        "".join(f'[{name}]\nkey = "{s.seaweed_jwt_key}"\nexpires_after_seconds = 60\n\n' for name in sections)
    )
    path.chmod(0o600)


def _write_mlflow_auth(s: StackSettings) -> None:
    """MLflow's basic-auth app: its user store beside the tracking database, and the
    admin it creates on first start (the password is read only then). Nobody else
    gets a permission by default; checks of the admin's password are cached for a
    minute (one worker, so no other process can hold a stale entry)."""
    path = s.state_dir / "mlflow" / "auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{s.state_dir / 'mlflow' / 'auth.db'}\n"
        f"admin_username = {s.mlflow_username}\n"
        f"admin_password = {s.mlflow_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    path.chmod(0o600)


def ensure_buckets(s: StackSettings, deadline: float) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        aws_access_key_id=s.s3_access_key_id,
        aws_secret_access_key=s.s3_secret_access_key,
        region_name="us-east-1",
    )
    for bucket in s.buckets:
        while True:
            try:
                client.head_bucket(Bucket=bucket)
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("404", "NoSuchBucket", "NotFound"):
                    try:
                        client.create_bucket(Bucket=bucket)
                        break
                    except ClientError:
                        pass  # the filer may still be settling; retry below
                elif code in ("403", "Forbidden"):
                    raise StackError(
                        f"the S3 server at {s.s3_endpoint_url} rejected the stack's own key "
                        f"{s.s3_access_key_id!r}: the running SeaweedFS was started with other "
                        "credentials; run `make down` and `make up` to restart it with these"
                    ) from exc
            except BotoCoreError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"could not create bucket {bucket!r} on {s.s3_endpoint_url}")
            time.sleep(0.5)


def up(s: StackSettings) -> None:
    svcs = services(s)
    started_here = False
    if _supervisord_pid(s) is None:
        busy = [
            f"{port} ({svc.title}; move it with {var})"
            for svc in svcs
            for var, port in svc.ports.items()
            if not _port_free(port)
        ]
        if busy:
            raise StackError(
                "ports in use by another process: "
                + ", ".join(busy)
                + ". Stop that process, or set the variables named to free ports."
            )
        for sub in ("logs", "prefect", "mlflow", "seaweedfs", "programs"):
            (s.state_dir / sub).mkdir(parents=True, exist_ok=True)
        s.state_dir.chmod(0o700)  # databases, keys, logs: this user's only
        _write_identities(s)
        _write_seaweed_security(s)
        _write_mlflow_auth(s)
        s.conf_path.write_text(render_config(s))
        s.conf_path.chmod(0o600)  # the services' keys are in their environment= lines
        for stale in (s.socket_path, s.pid_path):
            stale.unlink(missing_ok=True)
        subprocess.run([str(BIN / "supervisord"), "-c", str(s.conf_path)], check=True)
        started_here = True
        # supervisord daemonizes; wait for its socket.
        deadline = time.monotonic() + 15
        while _supervisord_pid(s) is None:
            if time.monotonic() > deadline:
                raise StackError("supervisord did not come up:\n" + _tail(s.log_dir / "supervisord.log"))
            time.sleep(0.1)
    else:
        _rpc(s).startAllProcesses(True)  # no-op for what runs; restarts what stopped

    deadline = time.monotonic() + s.start_timeout
    pending = {svc.name: svc for svc in svcs}
    while pending:
        for name, svc in list(pending.items()):
            if _healthy(svc.health_url):
                print(f"  {svc.title:<15} healthy  {svc.health_url}", flush=True)
                del pending[name]
        if not pending:
            break
        states = {p["name"]: p["statename"] for p in _rpc(s).getAllProcessInfo()}
        failed = [n for n in pending if states.get(n) in ("FATAL", "EXITED", "BACKOFF")]
        if failed or time.monotonic() > deadline:
            name = (failed or list(pending))[0]
            why = f"is {states.get(name)}" if failed else f"not healthy after {s.start_timeout:.0f} s"
            log = s.log_dir / f"{name}.log"
            message = f"{pending[name].title} {why}. Last lines of {log}:\n{_tail(log)}"
            if started_here:
                down(s, quiet=True)
                message += "\n(the stack was stopped again)"
            raise StackError(message)
        time.sleep(0.25)
    ensure_buckets(s, time.monotonic() + 60)
    print(f"  buckets         {', '.join(s.buckets)}")


def down(s: StackSettings, quiet: bool = False) -> None:
    pid = _supervisord_pid(s)
    if pid is None:
        if not quiet:
            print(f"local stack is not running (state: {s.state_dir})")
        return
    children = [p["pid"] for p in _rpc(s).getAllProcessInfo() if p["pid"]]
    _rpc(s).shutdown()
    # supervisord SIGKILLs a child stop_timeout s after SIGTERM; allow for that.
    deadline = time.monotonic() + s.stop_timeout + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        for victim in [pid, *children]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(victim, signal.SIGKILL)
    # SeaweedFS's gRPC unix sockets always go to /tmp and outlive a SIGKILL.
    for port in [s.s3_port, *range(s.seaweed_port_base, s.seaweed_port_base + 7)]:
        for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            leftover.unlink(missing_ok=True)
    if not quiet:
        print(f"local stack stopped (state kept in {s.state_dir}; `make clean` removes it)")


# Extra programs (pattern workers) ----------------------------------------------
CORE = {"s3", "prefect", "mlflow"}


def _program_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name) or name in CORE:
        raise StackError(
            f"program name {name!r} is not allowed: use lowercase letters, digits and dashes, "
            f"and none of the stack's own names ({', '.join(sorted(CORE))})"
        )
    return name


def _running_rpc(s: StackSettings):
    if _supervisord_pid(s) is None:
        raise StackError(f"the local stack is not running (state: {s.state_dir}); start it with `make up`")
    return _rpc(s)


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines (no quoting, `#` comments), as `--env-file` takes them."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise StackError(f"cannot read the env file {path}: {exc.strerror}") from exc
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    bad = [i + 1 for i, pair in enumerate(pairs) if len(pair) != 2 or not pair[0].strip().isidentifier()]
    if bad:
        raise StackError(f"{path} line(s) {bad} are not NAME=value")
    return {name.strip(): value for name, value in pairs}


HEALTH_LINE = "; health="  # an added program's health check, kept in its own .conf


def _program_health(s: StackSettings, name: str) -> tuple[str, str] | None:
    """(URL, key) of an added program that has a health check."""
    try:
        first = (s.programs_dir / f"{name}.conf").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    if not first.startswith(HEALTH_LINE):
        return None
    url, _, key = first[len(HEALTH_LINE) :].partition(" key=")
    return url, key


def _wait_healthy(s: StackSettings, name: str, url: str, key: str, deadline: float) -> None:
    rpc = _rpc(s)
    while not _healthy(url, key):
        info = rpc.getProcessInfo(name)
        if info["statename"] in ("FATAL", "EXITED", "BACKOFF") or time.monotonic() > deadline:
            why = f"is {info['statename']}" if time.monotonic() <= deadline else "is not healthy in time"
            log = s.log_dir / f"{name}.log"
            what = f"{url}" + (f" ({key}.status)" if key else "")
            raise StackError(f"program {name} {why} at {what}. Last lines of {log}:\n{_tail(log)}")
        time.sleep(0.5)


def add(
    s: StackSettings,
    name: str,
    command: list[str],
    cwd: Path,
    pass_env: list[str],
    timeout: float = 30,
    env_file: Path | None = None,
    health: str = "",
    health_key: str = "",
) -> int:
    """Run `command` as program `name` under this stack's supervisord (restarted
    if it crashes, stopped with the stack). Idempotent: the same definition
    leaves a running program alone, a changed one is replaced. Its environment:
    the variables of this process that `pass_env` names, then `env_file`'s.
    With `health`, waits until it is healthy there (start_timeout). Returns its pid."""
    import fnmatch

    _program_name(name)
    if not command:
        raise StackError("no command given: `stack.py add NAME --cwd DIR -- COMMAND...`")
    if health_key and not health:
        raise StackError("--health-key needs --health URL")
    rpc = _running_rpc(s)
    environment = {k: v for k, v in sorted(os.environ.items()) if any(fnmatch.fnmatchcase(k, p) for p in pass_env)}
    environment |= read_env_file(env_file) if env_file else {}
    s.programs_dir.mkdir(parents=True, exist_ok=True)
    if "[include]" not in s.conf_path.read_text():
        raise StackError("the running stack predates `stack.py add`: restart it with `make down && make up`")
    conf = s.programs_dir / f"{name}.conf"
    check = f"{HEALTH_LINE}{health}" + (f" key={health_key}" if health_key else "") + "\n" if health else ""
    text = check + _program(name, command, environment, cwd.resolve(), 100, s)
    if not (conf.exists() and conf.read_text() == text):
        conf.write_text(text)
    conf.chmod(0o600)  # the keys it was handed are in it
    added, changed, _removed = rpc.reloadConfig()[0]
    if name in changed:
        rpc.stopProcessGroup(name)
        rpc.removeProcessGroup(name)
        added.append(name)
    if name in added:
        rpc.addProcessGroup(name)  # autostart: supervisord starts it now
    deadline = time.monotonic() + timeout
    while True:
        info = rpc.getProcessInfo(name)
        if info["statename"] == "RUNNING":
            if health:
                _wait_healthy(s, name, health, health_key, time.monotonic() + s.start_timeout)
            return info["pid"]
        if info["statename"] in ("FATAL", "EXITED") or time.monotonic() > deadline:
            log = s.log_dir / f"{name}.log"
            raise StackError(f"program {name} is {info['statename']}. Last lines of {log}:\n{_tail(log)}")
        if info["statename"] == "STOPPED":
            rpc.startProcess(name, False)
        time.sleep(0.2)


def remove(s: StackSettings, name: str) -> None:
    _program_name(name)
    rpc = _running_rpc(s)
    with contextlib.suppress(xmlrpc.client.Fault):  # not running: nothing to stop
        rpc.stopProcessGroup(name)
    with contextlib.suppress(xmlrpc.client.Fault):
        rpc.removeProcessGroup(name)
    (s.programs_dir / f"{name}.conf").unlink(missing_ok=True)


def pid(s: StackSettings, name: str) -> int:
    try:
        info = _running_rpc(s).getProcessInfo(name)
    except xmlrpc.client.Fault as exc:
        raise StackError(f"no program named {name!r} in this stack (`stack.py status` lists them)") from exc
    if not info["pid"]:
        raise StackError(f"program {name} is {info['statename']}, it has no pid")
    return info["pid"]


def restart(s: StackSettings, name: str, timeout: float | None = None) -> int:
    """Stop one program (SIGTERM, SIGKILL after stop_timeout, as supervisord
    does), start it again and wait until it answers its health URL (a core
    service) or runs (an added program); for the reliability tests, which
    restart a service while a pattern runs. Returns the new pid."""
    rpc = _running_rpc(s)
    try:
        rpc.getProcessInfo(name)
    except xmlrpc.client.Fault as exc:
        raise StackError(f"no program named {name!r} in this stack (`stack.py status` lists them)") from exc
    with contextlib.suppress(xmlrpc.client.Fault):  # already stopped: just start it
        rpc.stopProcess(name, True)
    try:
        rpc.startProcess(name, True)
    except xmlrpc.client.Fault as exc:
        log = s.log_dir / f"{name}.log"
        raise StackError(f"{name} did not start again ({exc.faultString}). Last lines of {log}:\n{_tail(log)}") from exc
    core = {svc.name: (svc.health_url, "") for svc in services(s)}
    health, key = core.get(name) or _program_health(s, name) or ("", "")
    deadline = time.monotonic() + (timeout or s.start_timeout)
    while health and not _healthy(health, key):
        if time.monotonic() > deadline:
            log = s.log_dir / f"{name}.log"
            raise StackError(f"{name} restarted but is not healthy at {health}. Last lines of {log}:\n{_tail(log)}")
        time.sleep(0.25)
    if name == "s3":
        ensure_buckets(s, time.monotonic() + 60)
    return pid(s, name)


def _extra_programs(s: StackSettings) -> list[dict]:
    if _supervisord_pid(s) is None:
        return []
    return [p for p in _rpc(s).getAllProcessInfo() if p["name"] not in CORE]


def status(s: StackSettings) -> bool:
    running = _supervisord_pid(s) is not None
    states = {p["name"]: p for p in _rpc(s).getAllProcessInfo()} if running else {}
    all_ok = running
    for svc in services(s):
        info = states.get(svc.name)
        state = info["statename"] if info else "STOPPED"
        healthy = _healthy(svc.health_url) if info else False
        all_ok &= healthy
        pid = f"pid {info['pid']}" if info and info["pid"] else ""
        print(f"{svc.title:<15} {state:<9} {'healthy' if healthy else 'unhealthy':<10} {svc.health_url:<38} {pid}")
    for info in _extra_programs(s):
        check = _program_health(s, info["name"])
        healthy = info["statename"] == "RUNNING" and (check is None or _healthy(*check))
        all_ok &= healthy
        word = "" if check is None else "healthy" if healthy else "unhealthy"
        where = "(added with stack.py add)" if check is None else check[0] + (f" {check[1]}" if check[1] else "")
        print(f"{info['name']:<15} {info['statename']:<9} {word:<10} {where:<38} pid {info['pid']}")
    return all_ok


def logs(s: StackSettings, service: str | None, lines: int) -> None:
    names = [service] if service else [svc.name for svc in services(s)] + [p["name"] for p in _extra_programs(s)]
    for name in names:
        log = s.log_dir / f"{name}.log"
        print(f"==> {log} <==\n{_tail(log, lines)}\n")


def env_exports(s: StackSettings) -> str:
    return "\n".join(
        f"export {k}={v}"
        for k, v in {
            "PREFECT_API_URL": s.prefect_api_url,
            "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
            "S3_ENDPOINT_URL": s.s3_endpoint_url,
            **{name: getattr(s, field) for field, name in SECRET_FIELDS.items() if not name.startswith("STACK_")},
        }.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("env")
    p_logs = sub.add_parser("logs")
    p_logs.add_argument("service", nargs="?", help="s3, prefect, mlflow or an added program")
    p_logs.add_argument("-n", "--lines", type=int, default=40)
    p_add = sub.add_parser("add")
    p_add.add_argument("names", nargs="+", metavar="NAME", help="one program per name; {name} in COMMAND is replaced")
    p_add.add_argument("--cwd", type=Path, required=True)
    p_add.add_argument(
        "--pass-env",
        default="",
        help="comma-separated variable names or globs to hand the program (PREFECT_*,S3_*)",
    )
    p_add.add_argument("--env-file", type=Path, help="NAME=value lines handed to the program too (they win)")
    p_add.add_argument("--health", default="", help="wait until this URL answers 200 (status and restart poll it too)")
    p_add.add_argument("--health-key", default="", help='and until its JSON has KEY.status == "healthy"')
    p_remove = sub.add_parser("remove")
    p_remove.add_argument("name")
    p_pid = sub.add_parser("pid")
    p_pid.add_argument("name")
    p_restart = sub.add_parser("restart")
    p_restart.add_argument("name", help="s3, prefect, mlflow or an added program")
    argv = list(sys.argv[1:] if argv is None else argv)
    program = argv[argv.index("--") + 1 :] if "--" in argv else []  # `add ... -- COMMAND...`
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        settings = StackSettings()
        if args.command == "up":
            t0 = time.monotonic()
            up(settings)
            print(
                f"local stack up in {time.monotonic() - t0:.1f} s (state: {settings.state_dir})\n"
                f"  Prefect UI  http://{HOST}:{settings.prefect_port}\n"
                f"  MLflow UI   {settings.mlflow_tracking_uri}\n"
                f"  S3          {settings.s3_endpoint_url}"
            )
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            return 0 if status(settings) else 3
        elif args.command == "logs":
            logs(settings, args.service, args.lines)
        elif args.command == "env":
            print(env_exports(settings))
        elif args.command == "add":
            patterns = [p.strip() for p in args.pass_env.split(",") if p.strip()]
            for name in args.names:
                command = [part.replace("{name}", name) for part in program]
                started = add(
                    settings,
                    name,
                    command,
                    args.cwd,
                    patterns,
                    env_file=args.env_file,
                    health=args.health.replace("{name}", name),
                    health_key=args.health_key.replace("{name}", name),
                )
                state = "healthy" if args.health else "running"
                print(f"  {name:<15} {state:<8} pid {started}")
        elif args.command == "remove":
            remove(settings, args.name)
        elif args.command == "pid":
            print(pid(settings, args.name))
        elif args.command == "restart":
            t0 = time.monotonic()
            new_pid = restart(settings, args.name)
            print(f"  {args.name:<15} restarted, healthy in {time.monotonic() - t0:.1f} s, pid {new_pid}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
