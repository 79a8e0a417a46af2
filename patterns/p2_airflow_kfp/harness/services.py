"""This repository's harness (not the pattern): Airflow's four services on the
local tier, run as programs of the local stack's supervisord (`make p2-airflow`,
which `make pattern-2` runs first).

    python -m harness services ENV_FILE

prepares Airflow's home, P2_STATE_DIR/airflow: its metadata database (SQLite,
`airflow db migrate` once per Airflow version), the one user's password file
(P2_AIRFLOW_USERNAME / P2_AIRFLOW_PASSWORD, what the harness logs in with) and
a JWT signing key generated there once; then writes the services' environment
to ENV_FILE (mode 0600) for `stack.py add --env-file`. The Makefile starts

    airflow api-server                  127.0.0.1 at P2_AIRFLOW_API_URL's port, one worker
    airflow scheduler --skip-serve-logs LocalExecutor; no log server (it binds every interface)
    airflow dag-processor               parses dags/
    airflow triggerer --skip-serve-logs

each polled on `/api/v2/monitor/health` until it reports healthy. The compose
tier runs the same four from docker-compose.yml, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

from errors import P2Error
from harness import in_process
from settings import P2Settings


def api_address(settings: P2Settings) -> tuple[str, int]:
    """The base URL and port the api-server serves: P2_AIRFLOW_API_URL's, on loopback."""
    url = settings.airflow_api_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or parts.path not in ("", "/"):
        raise P2Error(
            f"P2_AIRFLOW_API_URL={url or '(unset)'} is not an address the local tier can serve Airflow on",
            "set it to http://127.0.0.1:PORT (make sets it from STACK_AIRFLOW_PORT, 8080 by default)",
        )
    return f"http://127.0.0.1:{parts.port or 80}", parts.port or 80


def jwt_secret(home: Path) -> str:
    """The api-server's signing key for its tokens, generated once and kept in
    Airflow's home, so a restart keeps the tokens it issued valid."""
    path = home / "jwt_secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def services_env(settings: P2Settings) -> dict[str, str]:
    """Airflow's configuration for the services, on top of airflow_env()'s."""
    home = settings.airflow_home
    url, port = api_address(settings)
    return settings.airflow_env(home) | {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",  # two cores: a few tasks at once is plenty
        # A restarted scheduler looks for the tasks its predecessor left running (a restart
        # takes the LocalExecutor workers along) every 60 s, not Airflow's default 300 s,
        # and runs them again (the LocalExecutor cannot adopt them).
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "60",
        # Both DAGs start paused: nothing runs on its own until pattern 2 unpauses them.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret(home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # The tasks' own settings: the state folder (kfp.local's root) resolved here.
        "P2_STATE_DIR": str(settings.state_dir.resolve()),
        "DO_NOT_TRACK": "true",
    }


def prepare(settings: P2Settings, env_file: Path) -> None:
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)  # the database, the password file and the signing key
    env = services_env(settings)
    in_process.migrate(home, env)
    passwords = home / "passwords.json"
    fd = os.open(passwords.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({settings.airflow_username: settings.airflow_password}, f)
    os.replace(passwords.with_suffix(".tmp"), passwords)
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# Airflow's services for pattern 2 (python -m harness services); secrets inside.\n")
        f.writelines(f"{k}={v}\n" for k, v in env.items())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness services ENV_FILE", file=sys.stderr)
        return 2
    try:
        prepare(P2Settings(), Path(argv[0]))
    except P2Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    return 0
