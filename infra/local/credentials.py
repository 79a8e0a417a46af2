"""The local stack's secrets: generated once per state folder into
STATE_DIR/secrets.env (mode 0600), one `NAME=value` per line.

    python3 credentials.py STATE_DIR     create what is missing (run by make at parse time)

Who reads them: make exports each one unless the environment already sets it (so
a key you set yourself wins, e.g. S3_ACCESS_KEY_ID=patterns-local); stack.py starts
the servers with them; the patterns and tests read them from the environment like
the URLs. Standard library only: make runs this before any environment exists.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

# What each service is started with, and what every client sends to it.
GENERATED = {
    # Prefect: the server's PREFECT_SERVER_API_AUTH_STRING, a client's PREFECT_API_AUTH_STRING.
    "PREFECT_API_AUTH_STRING": lambda: "admin:" + secrets.token_hex(24),
    # MLflow's basic-auth app: its admin user, and the clients' standard variables.
    "MLFLOW_TRACKING_USERNAME": lambda: "admin",
    "MLFLOW_TRACKING_PASSWORD": lambda: secrets.token_hex(24),
    # Pattern 2's Airflow (its services on the local tier): the admin's password.
    "P2_AIRFLOW_PASSWORD": lambda: secrets.token_hex(24),
    # SeaweedFS's one S3 identity.
    "S3_ACCESS_KEY_ID": lambda: "patterns-" + secrets.token_hex(8),
    "S3_SECRET_ACCESS_KEY": lambda: secrets.token_hex(24),
    # Server side only: the key MLflow's auth app signs its CSRF tokens with, and the
    # one SeaweedFS signs its volume and filer requests with (security.toml).
    "STACK_MLFLOW_FLASK_SECRET_KEY": lambda: secrets.token_hex(32),
    "STACK_SEAWEED_JWT_KEY": lambda: secrets.token_hex(32),
}


def read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")
    return {name.strip(): value.strip() for name, value in pairs}


def ensure(state_dir: Path) -> Path:
    """STATE_DIR/secrets.env with every name in GENERATED; existing values are kept."""
    path = state_dir / "secrets.env"
    values = read(path)
    missing = {name: make() for name, make in GENERATED.items() if name not in values}
    if missing:
        state_dir.mkdir(parents=True, exist_ok=True)
        values |= missing
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# Generated once for this state folder by infra/local/credentials.py; make clean removes it.\n")
            f.writelines(f"{name}={value}\n" for name, value in values.items())
        os.replace(tmp, path)
    path.chmod(0o600)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: credentials.py STATE_DIR")
    print(ensure(Path(sys.argv[1])))
