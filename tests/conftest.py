"""Shared fixtures: a real local stack on free ports, and helpers to run make
targets and pattern entrypoints the way a user does.

The stack is started once per test session with `make up` in a temporary
state folder, so the tests never touch a stack the developer has running,
and it is always stopped with `make down` (its logs are printed if a test
failed). Tests talk to the real servers over HTTP: MLflow's REST API, Prefect's
REST API, and S3 through boto3.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "infra" / "local"))
import credentials  # noqa: E402 - the stacks' secrets files (infra/local/credentials.py, standard library only)

sys.path.insert(0, str(REPO / "infra" / "screenshots"))
import pages  # noqa: E402 - the UI pages the READMEs show (infra/screenshots/pages.py)

PATTERNS = REPO / "patterns"
RESULT_RE = re.compile(r"^Result: (.*)$", re.MULTILINE)
UV = os.environ.get("UV", "uv")  # `uv run` exports its own path; `make test` runs pytest that way


# Ports for the stacks and the tests. Each pytest-xdist worker (gw0, gw1...) takes them
# from a band of its own below Linux's ephemeral range (32768 and up), and never hands
# one out twice: two workers starting their stacks at the same moment cannot pick the
# same port before either has bound it.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
PORT_BAND = 2500
_next_port = 20000 + PORT_BAND * WORKER


def free_port() -> int:
    return free_port_run(1)


def free_port_run(length: int) -> int:
    """The first port of `length` consecutive free ports in this worker's band."""
    global _next_port
    band_end = 20000 + PORT_BAND * (WORKER + 1)
    while _next_port + length <= band_end:
        base, _next_port = _next_port, _next_port + length
        if all(_free(base + i) for i in range(length)):
            return base
    raise RuntimeError(f"no {length} consecutive free ports left in {band_end - PORT_BAND}-{band_end - 1}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def process_tree(*roots: int) -> set[int]:
    """The pids of `roots` and of every process below them (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that one of `pids`
    holds, from /proc/PID/net/tcp and tcp6 (IPv4-mapped IPv6 addresses shown as IPv4)."""
    import ipaddress

    owners: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = pid
    found, seen = [], set()
    # Each process's own view (its network namespace: a container's may not be the host's).
    tables = [Path(f"/proc/{pid}/net/{table}") for pid in pids for table in ("tcp", "tcp6")]
    for path in tables:
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:  # gone meanwhile
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in owners or inode in seen:  # 0A: LISTEN
                continue
            seen.add(inode)
            raw, port = local.split(":")
            packed = b"".join(bytes.fromhex(raw[i : i + 8])[::-1] for i in range(0, len(raw), 8))
            address = ipaddress.ip_address(packed)
            if address.version == 6 and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.append((owners[inode], str(address), int(port, 16)))
    return found


def parse_result(output: str) -> dict[str, str]:
    """The fields of the last `Result: k=v ...` line."""
    lines = RESULT_RE.findall(output)
    assert lines, f"no 'Result:' line in the output:\n{output[-3000:]}"
    return dict(field.split("=", 1) for field in lines[-1].split())


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Stack:
    env: dict[str, str]
    state_dir: Path
    _csrf: dict[str, str] = field(default_factory=dict)

    @property
    def mlflow(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def prefect(self) -> str:
        return self.env["PREFECT_API_URL"]

    def make(self, *targets: str, env: dict[str, str] | None = None, timeout: float = 900) -> Completed:
        return run(["make", "--no-print-directory", *targets], env={**self.env, **(env or {})}, timeout=timeout)

    def in_env(
        self,
        project: Path,
        *command: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 600,
    ) -> Completed:
        """Run a command in a pattern's own locked environment, with this stack's variables."""
        return in_env(project, *command, env={**self.env, **(env or {})}, cwd=cwd, timeout=timeout)

    @contextmanager
    def in_background(
        self, project: Path, *command: str, env: dict[str, str] | None = None
    ) -> Iterator[subprocess.Popen]:
        """A long-running command (a server, `flow.py serve`) in a pattern's
        environment, always stopped: SIGTERM, then SIGKILL after 30 s."""
        process = subprocess.Popen(
            [UV, "run", "--locked", "--project", str(project), *command],
            cwd=project,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def stack_py(self, *args: str, env: dict[str, str] | None = None) -> Completed:
        """`python infra/local/stack.py ARGS` in the stack's own environment (add, pid, remove...)."""
        return self.in_env(
            REPO / "infra" / "local", "python", str(REPO / "infra" / "local" / "stack.py"), *args, env=env
        )

    def restart(self, service: str) -> int:
        """`stack.py restart SERVICE`: stop it, start it, wait until it answers
        health again (the reliability battery); returns the new pid."""
        done = self.stack_py("restart", service)
        assert done.returncode == 0, done.output
        return int(done.stdout.split("pid")[-1])

    # MLflow REST API (basic auth: the stack's admin) ---------------------------------
    @property
    def mlflow_auth(self) -> tuple[str, str]:
        return self.env["MLFLOW_TRACKING_USERNAME"], self.env["MLFLOW_TRACKING_PASSWORD"]

    def mlflow_get(self, endpoint: str, **params) -> dict:
        url = f"{self.mlflow}/api/2.0/mlflow/{endpoint}"
        response = httpx.get(url, params=params, auth=self.mlflow_auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def mlflow_post(self, endpoint: str, body: dict) -> dict:
        url = f"{self.mlflow}/api/2.0/mlflow/{endpoint}"
        response = httpx.post(url, json=body, auth=self.mlflow_auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def model_versions(self, name: str) -> list[dict]:
        return self.mlflow_get("model-versions/search", filter=f"name='{name}'").get("model_versions", [])

    def alias_version(self, name: str, alias: str) -> str | None:
        response = httpx.get(
            f"{self.mlflow}/api/2.0/mlflow/registered-models/alias",
            params={"name": name, "alias": alias},
            auth=self.mlflow_auth,
            timeout=30,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()["model_version"]["version"]

    def runs(self, experiment_name: str) -> list[dict]:
        experiment = self.mlflow_get("experiments/get-by-name", experiment_name=experiment_name)
        body = {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 1000}
        return self.mlflow_post("runs/search", body).get("runs", [])

    # Prefect REST API (the auth string, and a CSRF token for writes) ------------------
    @property
    def prefect_headers(self) -> dict[str, str]:
        auth = base64.b64encode(self.env["PREFECT_API_AUTH_STRING"].encode()).decode()
        return {"Authorization": f"Basic {auth}", **self._csrf}

    def _csrf_token(self) -> None:
        client = f"tests-{WORKER}-{id(self)}"
        response = httpx.get(f"{self.prefect}/csrf-token", params={"client": client}, headers=self.prefect_headers)
        if response.status_code == 200:  # 422: the server does not check CSRF tokens
            self._csrf.update({"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": client})

    def prefect_post(self, path: str, body: dict) -> dict | list:
        return self._prefect("POST", path, body)

    def prefect_get(self, path: str) -> dict | list:
        return self._prefect("GET", path)

    def final_flow_run(
        self, flow_run_id: str, what: str, timeout: float = 300, process: subprocess.Popen | None = None
    ) -> dict:
        """The flow run once its state is final (COMPLETED, FAILED, CRASHED or CANCELLED)."""

        def final() -> dict | None:
            run = self.prefect_get(f"flow_runs/{flow_run_id}")
            return run if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        return wait_for(final, timeout, what, process)

    def prefect_post_raw(self, path: str, body: dict) -> httpx.Response:
        """The response as is, for calls the server is expected to refuse."""
        return self._prefect_response("POST", path, body)

    def _prefect(self, method: str, path: str, body: dict | None = None) -> dict | list:
        response = self._prefect_response(method, path, body)
        response.raise_for_status()
        return response.json()

    def _prefect_response(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        """Prefect's server answers 503 when its SQLite database is busy and
        means "retry"; its own client retries, and so do these calls (bounded)."""
        if method != "GET" and not self._csrf:
            self._csrf_token()
        for attempt in range(6):
            url = f"{self.prefect}/{path}"
            response = httpx.request(method, url, json=body, headers=self.prefect_headers, timeout=30)
            if response.status_code != 503:
                break
            time.sleep(0.5 * 2**attempt)
        return response

    def s3(self, access_key: str | None = None, secret_key: str | None = None):
        """A client with the stack's key, or with another one (to see it refused)."""
        return boto3.client(
            "s3",
            endpoint_url=self.env["S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=access_key or self.env["S3_ACCESS_KEY_ID"],
            aws_secret_access_key=secret_key or self.env["S3_SECRET_ACCESS_KEY"],
        )


def run(command: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = 900) -> Completed:
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"{' '.join(command)} timed out after {timeout} s:\n{out[-3000:]}")
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def wait_for(check: Callable[[], object], timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll `check` until it returns something truthy (returned), failing the
    test after `timeout` s, or at once if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            assert process.poll() is None, f"exited while waiting for {what}:\n{process.stdout.read()[-3000:]}"
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)


def finish(process: subprocess.Popen, what: str, timeout: float = 900) -> str:
    """The combined output of a background run (`Stack.in_background`), once it
    ends; the test fails with that output if it does not end within `timeout`."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{what} did not end within {timeout:.0f} s:\n{output[-4000:]}")
    return output


def in_env(
    project: Path, *command: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 600
) -> Completed:
    """Run a command in a project's own locked environment (`uv run --project`)."""
    return run(
        [UV, "run", "--locked", "--project", str(project), *command], env=env, cwd=cwd or project, timeout=timeout
    )


def stack_env(state_dir: Path) -> dict[str, str]:
    prefect, mlflow, s3 = free_port(), free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        # make exports the caller's stack URLs and logins (P2_AIRFLOW_* too, on both tiers):
        # none of them may point a test at a stack other than its own.
        if not k.startswith(
            ("PREFECT_", "MLFLOW_", "S3_", "P1_", "P2_", "P3_", "P4_", "AIRFLOW", "STACK_", "VIRTUAL_ENV")
        )
    }
    env.update(
        STACK_STATE_DIR=str(state_dir),
        STACK_PREFECT_PORT=str(prefect),
        STACK_MLFLOW_PORT=str(mlflow),
        STACK_S3_PORT=str(s3),
        STACK_SEAWEED_PORT_BASE=str(free_port_run(7)),
        STACK_AIRFLOW_PORT=str(free_port()),  # pattern 2's api-server (make p2-airflow)
        PREFECT_API_URL=f"http://127.0.0.1:{prefect}/api",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow}",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{s3}",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        # Pattern 4: its build records and published snapshots in the test's
        # state, and a source build unless a test asks for the image
        # (tests/p4_github_actions_prefect/test_p4_image.py, marker `docker`).
        P4_STATE_DIR=str(state_dir / "p4"),
        P4_BUILD="source",
        # Images the tests build carry a name of their own: a user's `make pattern-4`
        # (whose auto mode runs an image that is already built) never meets them.
        P4_IMAGE_REPO="p4-flows-test",
        # The workers of patterns 3 and 4 ask Prefect for runs every 5 s here, not every
        # 1 s (the patterns' default). Three workers asking every second keep the stack's
        # Prefect server busy even when nothing runs: 12.7 CPU-seconds a minute against
        # 3.9 at 5 s, measured on an idle `make up`. The suite runs two local stacks and
        # the compose stack at once on two cores, so that idle load took CPU from every
        # test; a run now waits up to 5 s for its worker.
        P3_WORKER_POLL_SECONDS="5",
        P4_WORKER_POLL_SECONDS="5",
    )
    return env


LINEAGE_RE = re.compile(r"^Lineage: (.*)$", re.MULTILINE)


def commit_of(folder: Path) -> str:
    """What patterns 1-3 record as their code version: HEAD, with -dirty when the
    folder has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "."], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"{head.stdout.strip()}-dirty" if dirty else head.stdout.strip()


def lineage_chain(stack: Stack, given: str, *args: str) -> dict[str, str]:
    """infra/lineage/lineage.py GIVEN on this stack: the fields of its `Lineage:` line,
    and its whole output under `_output`."""
    done = in_env(REPO, "python", str(REPO / "infra" / "lineage" / "lineage.py"), given, *args, env=stack.env, cwd=REPO)
    assert done.returncode == 0, done.output[-3000:]
    lines = LINEAGE_RE.findall(done.stdout)
    assert len(lines) == 1, done.output[-3000:]
    return dict(field.split("=", 1) for field in lines[0].split()) | {"_output": done.stdout}


def remove_loop_batches(loop_output: str, *names: str) -> None:
    """The batch files and pointers pattern 1's loop published (its run N, read from its
    output), and those named `names`: only its own, as the other tier's loop may be
    publishing beside it in this checkout."""
    batches = PATTERNS / "p1_prefect_mlflow" / "data" / "batches"
    found = re.search(r"\(loop run (\d+)\)", loop_output)
    own = [*batches.glob(f"loop-{found.group(1)}-*")] if found else []
    for path in own + [p for name in names for p in batches.glob(f"{name}*")]:
        path.unlink(missing_ok=True)


def start_stack(env: dict[str, str], state_dir: Path) -> Stack:
    """`make up` of a stack of its own (env from stack_env); the test fails with its logs if it does not start."""
    s = Stack(env=env, state_dir=state_dir)
    started = s.make("up", timeout=600)
    if started.returncode != 0:
        logs = s.make("logs", env={"LINES": "80"}).output
        s.make("down")
        pytest.fail(f"`make up` failed ({started.returncode}):\n{started.output}\n{logs}")
    s.env = read_secrets(state_dir / "secrets.env") | s.env  # generated by make; a key set in env wins
    return s


def read_secrets(path: Path) -> dict[str, str]:
    """The stack's generated keys and passwords (NAME=value lines), as a client takes them."""
    assert path.is_file(), f"no secrets file at {path}"
    return {name: value for name, value in credentials.read(path).items() if not name.startswith("STACK_")}


def stop_stack(s: Stack) -> None:
    stopped = s.make("down", timeout=120)
    assert stopped.returncode == 0, stopped.output


# ---- two workers: pytest-xdist, `-n 2` (make test) -----------------------------------
# Each worker is a session of its own, with its own stack (the `stack` fixture) and its
# own ports (free_port_run). The tests of one group run on one worker, in file order;
# a file is a group unless it is named here.
GROUPS = {
    # One Docker engine, one compose project, pattern 4's test image names and build port.
    "tests/compose/": "docker",
    "tests/p4_github_actions_prefect/test_p4_image.py": "docker",
    # The readers of the session's first runs of patterns 1 and 4 (p1_first_run, p4_cycle),
    # so those run once: and test_bench's run of pattern 1 comes after the first one.
    "tests/p1_prefect_mlflow/test_p1.py": "first-runs",
    "tests/p4_github_actions_prefect/test_p4.py": "first-runs",
    "tests/lineage/": "first-runs",
    "tests/test_bench.py": "first-runs",
    # Independent of each other: each copies a folder and runs it.
    "tests/copy_out/": None,
}
# Handed out in this order, the longest first, so that both workers end together.
DISPATCH = ["docker", "first-runs", "tests/p3_metaflow_prefect/test_p3.py", "tests/p2_airflow_kfp/test_p2.py"]


def group_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    for prefix, group in GROUPS.items():
        if path.startswith(prefix):
            return group or nodeid  # None: each test alone
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's `loadscope` with GROUPS as the scopes. (Its `loadgroup` reads `xdist_group`
    marks through node ids, which pytest 9.2 no longer lets it change: pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order, which is also the order groups are handed out to the workers: the
    reliability tests restart services and kill workers, so they come after every
    other test (each worker meets them last, and every other test meets its stack as
    `make test` leaves it); otherwise the groups in DISPATCH first, then the rest in
    file order."""
    rank = {group: i for i, group in enumerate(DISPATCH)}
    items.sort(
        key=lambda item: (
            item.get_closest_marker("reliability") is not None,
            rank.get(group_of(item.nodeid), len(rank)),
        )
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("stack")
    s = start_stack(stack_env(state_dir), state_dir)
    yield s
    if request.session.testsfailed:
        # Through the terminal reporter: a plain print in a teardown is captured and lost.
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        logs = s.make("logs", env={"LINES": "60"}).output
        reporter.write_line("\n---- local stack logs (a test failed) ----\n" + logs)
    stop_stack(s)


# ---- pattern runs shared by the tests that only read what they produced ------------
# Each runs once per session (per worker), on first use: the pattern's smoke tests and
# lineage assert on the same run instead of running the pattern again.


@pytest.fixture(scope="session")
def p1_first_run(stack: Stack) -> dict[str, str]:
    """`make pattern-1` on the session's empty stack: the first model version (and the
    run's wall time, which test_bench splits into its parts)."""
    started = time.perf_counter()
    done = stack.make("pattern-1")
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.output
    return parse_result(done.stdout) | {"_output": done.output, "_wall": str(wall)}


@pytest.fixture(scope="session")
def p2_env(stack: Stack) -> dict[str, str]:
    """Pattern 2's environment on the session stack: its own state folder, no
    clock on the ETL DAG (unpausing a daily DAG makes the scheduler start the
    latest interval's run too: it would train before the test's own run), and
    nothing from the caller that could point it or Airflow elsewhere. Every
    `make pattern-2` of a session passes the same P2_* on to Airflow's services:
    others would make `stack.py add` restart them."""
    env = {k: v for k, v in stack.env.items() if not k.startswith(("P2_", "AIRFLOW", "KFP_", "VIRTUAL_ENV"))}
    return env | {"P2_STATE_DIR": str(stack.state_dir / "p2"), "P2_SCHEDULE": ""}


@pytest.fixture(scope="session")
def p4_cycle(stack: Stack) -> dict:
    """`make pattern-4` (source build: P4_BUILD=source in stack_env), the first release of this commit."""
    done = stack.make("pattern-4", timeout=900)
    assert done.returncode == 0, done.output[-5000:]
    return {"output": done.output, "result": parse_result(done.stdout)}


# ---- the UIs in a real browser (marker `browser`) ------------------------------------


@pytest.fixture
def ui(stack: Stack) -> Iterator:
    """Headless Chromium signed in to the session stack's UIs (infra/screenshots/browser.py);
    Airflow's URL is the one make derives from STACK_AIRFLOW_PORT. One per test: Playwright's
    sync API holds an event loop in the worker's thread while it is open, and no other
    test on that worker may meet it (another browser, asyncio.run). Pages settle 3 s, not
    a picture's 10: the test reads the console, and a picture is not taken."""
    from browser import Browser, Logins
    from playwright.sync_api import sync_playwright

    env = stack.env | {"P2_AIRFLOW_API_URL": f"http://127.0.0.1:{stack.env['STACK_AIRFLOW_PORT']}"}
    with sync_playwright() as playwright:
        browser = Browser(playwright, Logins.from_env(env), timeout_s=90, settle_s=3)
        try:
            yield browser
        finally:
            browser.close()


def check_ui(ui, pattern: str, result: dict[str, str]) -> dict[str, str]:
    """Every page of `pattern` that its README shows (pages.PAGES) shows this run's
    record (the fields of its Result line) and logs no console error. A page that
    does not is saved under .state/test-browser/ and named in the failure. Returns
    the records the pages were filled from."""
    fields = pages.records(pattern, pages.Services(ui.logins), {k: v for k, v in result.items() if k[:1] != "_"})
    for page in pages.pages_of(pattern):
        failure = REPO / ".state" / "test-browser" / f"{page.name}-gw{WORKER}.png"
        with ui.open(page.ui, page.url_path(fields), page.texts(fields), failure) as (_, loaded):
            assert not loaded.console_errors, f"{loaded.url} logged errors: {loaded.console_errors}"
    return fields
