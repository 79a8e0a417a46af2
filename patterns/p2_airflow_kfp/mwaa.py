"""Pattern 2's DAGs as an Amazon MWAA bundle: the same files, laid out the way
MWAA reads them from its S3 bucket.

    python mwaa.py [--out DIR] [--airflow 3.3.1] [--python 3.12]   (make p2-mwaa-bundle)

    DIR/dags/p2_airflow_kfp/...  the DAG file and the modules it imports, with the
                                 sample data; sync to s3://<bucket>/dags/
    DIR/dags/.airflowignore      the modules are not DAG files: not parsed as such
    DIR/requirements.txt         MWAA's --constraint line for that Airflow and
                                 Python, then the packages MWAA lacks
    DIR/startup.sh               the P2_* settings of this shell (never a key or
                                 password): MWAA runs it before its components

On MWAA the training runs in cluster mode: a KubernetesPodOperator submits to
KFP on your EKS cluster (P2_KFP_HOST). Local and Vertex AI modes submit from
the KFP environment, which cannot share MWAA's one environment with Airflow
(kfp pins kubernetes<31), so the bundle refuses them. MWAA runs the Airflow version you choose for the environment;
give that version (`--airflow`): the constraint line follows it. No plugins.
Built and checked here (tests/test_mwaa.py), never uploaded.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

from errors import P2Error
from settings import PATTERN_DIR

DAG_FOLDER = "p2_airflow_kfp"
MODULES = ("settings.py", "etl.py", "handoff.py", "errors.py")
# The packages MWAA's image lacks: the Kubernetes provider, pydantic-settings.
PINNED = ("apache-airflow-providers-cncf-kubernetes", "pydantic-settings")
# Settings a startup script may carry: where things are, never a credential.
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")
# This machine's own settings: the harness's Airflow, state folder and interpreter.
HERE_ONLY = (
    "P2_KFP_MODE",
    "P2_AIRFLOW_",
    "P2_DAG_PARSE_TIMEOUT",
    "P2_DAG_RUN_TIMEOUT",
    "P2_STATE_DIR",
    "P2_KFP_PYTHON",
)
# The newest Airflow MWAA offers (docs.aws.amazon.com/mwaa/latest/userguide/airflow-versions.html,
# read 2026-11-27: 3.3.1, 3.2.1, 3.0.6, 2.11.x, 2.10.x; every 3.x on Python 3.12). Not 3.3.2.
MWAA_AIRFLOW, MWAA_PYTHON = "3.3.1", "3.12"
CONSTRAINTS = "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"


def locked_versions() -> dict[str, str]:
    packages = tomllib.loads((PATTERN_DIR / "uv.lock").read_text())["package"]
    return {p["name"]: p["version"] for p in packages if "version" in p}


def requirements(airflow: str, python: str) -> str:
    """MWAA installs with Airflow's constraints for its version, which pin the
    provider too (3.3.1's: cncf-kubernetes 10.21.0): a different pin here would
    fail the install, so the names stand alone and the versions tested here are noted."""
    locked = locked_versions()
    tested = ", ".join(f"{name}=={locked[name]}" for name in PINNED)
    lines = [f'--constraint "{CONSTRAINTS.format(airflow=airflow, python=python)}"']
    lines += [f"# tested here with {tested} on apache-airflow=={locked['apache-airflow']}", *PINNED]
    return "\n".join(lines) + "\n"


def startup_script(environ: dict[str, str]) -> str:
    """The P2_* variables of this shell as exports; credentials left out. The mode
    must be cluster, with the KFP API as pods on your cluster reach it."""
    mode = environ.get("P2_KFP_MODE") or ("cluster" if environ.get("P2_KFP_HOST") else "local")
    if mode != "cluster" or not environ.get("P2_KFP_HOST"):
        raise P2Error(
            f"an MWAA bundle needs cluster mode (P2_KFP_MODE={mode or 'local'}): local and Vertex AI modes submit "
            "from the KFP environment, a second Python environment MWAA does not have",
            "set P2_KFP_HOST to your KFP API as pods on your cluster reach it, then build again",
        )
    lines = ["#!/bin/sh", "# Pattern 2's settings for MWAA's components (mwaa.py); S3 and GCP access: IAM roles."]
    lines.append(f"export P2_KFP_MODE={mode}")
    for name, value in sorted(environ.items()):
        if not name.startswith("P2_") or name.startswith(HERE_ONLY) or any(w in name for w in SECRET_WORDS):
            continue
        if "://127.0.0.1" in value or "://localhost" in value:
            raise P2Error(
                f"{name}={value} points at this machine, which MWAA cannot reach",
                f"unset {name} or set it to the address MWAA's workers reach, then build again",
            )
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def build(out: Path, airflow: str, python: str, environ: dict[str, str]) -> Path:
    startup = startup_script(environ)  # refuses a mode MWAA cannot run, before writing anything
    if out.exists():
        shutil.rmtree(out)
    folder = out / "dags" / DAG_FOLDER
    (folder / "dags").mkdir(parents=True)
    shutil.copy2(PATTERN_DIR / "dags" / "p2_airflow_kfp.py", folder / "dags" / "p2_airflow_kfp.py")
    for module in MODULES:
        shutil.copy2(PATTERN_DIR / module, folder / module)
    shutil.copytree(PATTERN_DIR / "data", folder / "data")
    (out / "dags" / ".airflowignore").write_text("".join(f"{DAG_FOLDER}/{m}\n" for m in MODULES))
    (out / "requirements.txt").write_text(requirements(airflow, python))
    (out / "startup.sh").write_text(startup)
    return out


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PATTERN_DIR / ".state" / "mwaa")
    parser.add_argument("--airflow", default=MWAA_AIRFLOW, help="the MWAA environment's Airflow version")
    parser.add_argument("--python", default=MWAA_PYTHON, help="the Python of that MWAA version")
    args = parser.parse_args(argv)
    try:
        out = build(args.out, args.airflow, args.python, dict(os.environ))
    except P2Error as exc:
        print(f"error: {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
        return 1
    print(f"MWAA bundle for Airflow {args.airflow} (Python {args.python}) in {out}:", file=sys.stderr)
    print("  aws s3 sync dags/ s3://<bucket>/dags/ and upload requirements.txt and startup.sh;", file=sys.stderr)
    print("  name them in the environment (RequirementsS3Path, StartupScriptS3Path).", file=sys.stderr)
    print(f"Result: status=ok bundle={out} airflow={args.airflow} python={args.python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
