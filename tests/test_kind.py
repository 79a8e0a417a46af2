"""The kind tier runs only on GitHub's runners (.github/workflows/e2e-kind.yml),
so what can be checked here is checked here: the KFP backend `kind.sh` installs
matches the SDK minor pattern 2 locks, every pin is exact (binaries by SHA-256,
the node image by digest) and stands in infra/kind/README.md's "Verified
against" table beside its upstream evidence, and the script calls only the
kind and kubectl it installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

KIND_SH = REPO / "infra" / "kind" / "kind.sh"
PIPELINE_LOCK = REPO / "patterns" / "p2_airflow_kfp" / "pipeline" / "uv.lock"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def kind_versions(**env: str) -> dict[str, str]:
    """`kind.sh versions`: the pins as the script resolves them (needs no Docker)."""
    done = subprocess.run(
        ["bash", str(KIND_SH), "versions"], capture_output=True, text=True, check=True, env=os.environ | env
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def locked(name: str) -> str:
    packages = tomllib.loads(PIPELINE_LOCK.read_text())["package"]
    return next(p["version"] for p in packages if p["name"] == name)


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.lstrip("v").split(".")
    return int(major), int(minor_)


def backend_skew(pins: dict[str, str]) -> list[str]:
    """What differs between the KFP backend and the SDK pattern 2 compiles with."""
    backend = minor(pins["KFP_VERSION"])
    return [
        f"{sdk} {locked(sdk)} (pipeline/uv.lock) against the KFP backend {pins['KFP_VERSION']} (kind.sh)"
        for sdk in ("kfp", "kfp-kubernetes")
        if minor(locked(sdk)) != backend
    ]


def test_the_kfp_backend_is_at_the_sdks_minor_version() -> None:
    """An older API server refuses what a newer SDK compiles (kubeflow/pipelines
    #12495: 2.14's server and the `optional` of secretAsEnv, added in 2.15)."""
    assert backend_skew(kind_versions()) == []


def test_the_skew_check_fails_when_they_diverge() -> None:
    skew = backend_skew(kind_versions(KFP_VERSION="2.14.3"))
    assert skew and skew[0].startswith(f"kfp {locked('kfp')} (pipeline/uv.lock) against the KFP backend 2.14.3")


def test_every_pin_is_exact() -> None:
    pins = kind_versions()
    for name in ("KIND_VERSION", "KUBECTL_VERSION"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", pins[name]), pins[name]
    assert HEX64.match(pins["KIND_SHA256"]) and HEX64.match(pins["KUBECTL_SHA256"])
    image, _, digest = pins["KIND_NODE_IMAGE"].partition("@sha256:")
    assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+", image) and HEX64.match(digest), pins["KIND_NODE_IMAGE"]
    # kubectl within one minor of the cluster's Kubernetes (the version skew policy)
    node = minor(image.split(":")[1])
    assert abs(minor(pins["KUBECTL_VERSION"])[1] - node[1]) <= 1 and minor(pins["KUBECTL_VERSION"])[0] == node[0]


def test_every_pin_stands_in_the_verified_table_with_its_evidence() -> None:
    readme = (REPO / "infra" / "kind" / "README.md").read_text()
    table = readme[readme.index("## Verified against") :]
    rows = [line for line in table.splitlines() if line.startswith("|") and not line.startswith("|---")]
    for name, value in kind_versions().items():
        value = value.split("@sha256:")[-1] if name == "KIND_NODE_IMAGE" else value
        [row] = [r for r in rows if f"`{name}`" in r] or [""]
        assert value in row, f"{name}={value} is not in infra/kind/README.md's table"
        evidence = row.rsplit("|", 2)[-2]
        assert re.search(r"\w+/\w+", evidence), f"{name}: the row names no upstream source: {row}"


def test_the_script_calls_only_the_tools_it_installed() -> None:
    """GitHub's ubuntu-24.04 runners ship kind and kubectl on PATH: the pinned
    ones must be the ones called, by path."""
    code = [line.split("#")[0] for line in KIND_SH.read_text().splitlines()]
    bare = [line for line in code if re.search(r"(^|[\s;|(&])(kind|kubectl) ", line) and "log " not in line]
    assert bare == [], "kind.sh calls kind or kubectl from PATH:\n" + "\n".join(bare)


@pytest.mark.parametrize("command", ["up", "load", "s3"])
def test_a_missing_docker_or_argument_is_an_error_naming_it(command: str, tmp_path: Path) -> None:
    """Without Docker (as here) `up` stops before downloading anything; `load`
    and `s3` without their argument print their usage."""
    (tmp_path / "dirname").symlink_to(shutil.which("dirname"))  # the script's one tool before docker
    env = os.environ | {"PATH": str(tmp_path)}
    done = subprocess.run(
        [shutil.which("bash"), str(KIND_SH), command], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 1
    expected = "kind needs Docker" if command == "up" else f"usage: kind.sh {command}"
    assert expected in done.stderr, done.stderr
