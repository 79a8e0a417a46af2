"""Pattern 1's live endpoint, measured inside pattern 1's environment by
bench/run.py (the stack up, `make pattern-1` run: a champion exists):

- promotion to first answer: @champion of a model of the bench's own (two
  versions of the champion's files) moves, and a client posting one row
  times until an answer names the new version (P1_ENDPOINT_POLL_SECONDS=1);
- latency and throughput on loopback, one client, sequential requests, for a
  1-row and a 100-row request, of endpoint.py and of `mlflow models serve`
  on the same model, started side by side, measured alternately.

Prints one JSON line: {"promotion_s": [...], "slowest_answer_s": [...] (the slowest
answer during each swap), "serve": {server: {rows: [{...}, ...]}}, "seconds": ...}.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

P1 = Path(__file__).resolve().parents[1] / "patterns" / "p1_prefect_mlflow"
sys.path.insert(0, str(P1))

from settings import load_settings  # noqa: E402  (this folder, put on sys.path above)

MODEL = "p1-endpoint-bench"
SECONDS = float(os.environ.get("BENCH_ENDPOINT_SECONDS", "10"))  # per server and request size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(url: str, process: subprocess.Popen, log, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{process.args} exited: {log.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def body(rows: int) -> dict:
    data = list(csv.DictReader((P1 / "data" / "raw" / "breast_cancer.csv").open()))
    columns = [c for c in data[0] if c != "target"]
    picked = [data[i % len(data)] for i in range(rows)]
    return {"dataframe_split": {"columns": columns, "data": [[float(r[c]) for c in columns] for r in picked]}}


def load_test(url: str, payload: dict) -> dict:
    """Sequential requests for SECONDS: p50, p99 (ms), requests per second, failures."""
    latencies, failed = [], 0
    with httpx.Client(timeout=30) as http:
        end = time.perf_counter() + SECONDS
        while (start := time.perf_counter()) < end:
            try:
                ok = http.post(url, json=payload).status_code == 200
            except httpx.HTTPError as exc:
                print(f"{url}: {exc!r} after {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
                ok = False
            latencies.append(time.perf_counter() - start)
            failed += not ok
    latencies.sort()
    return {
        "requests": len(latencies),
        "failed": failed,
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "rps": round(len(latencies) / SECONDS, 1),
    }


def promotion(client, base: str, version: str, one_row: dict) -> tuple[float, float]:
    """Seconds from moving @champion to `version` until an answer comes from it, and
    the slowest answer meanwhile (the new version loads beside the old, which serves)."""
    t0 = time.perf_counter()
    client.set_registered_model_alias(MODEL, "champion", version)
    slowest = 0.0
    with httpx.Client(timeout=30) as http:
        while True:
            start = time.perf_counter()
            response = http.post(f"{base}/invocations", json=one_row)
            slowest = max(slowest, time.perf_counter() - start)
            if response.status_code != 200:
                raise SystemExit(f"an answer during the swap was {response.status_code}: {response.text[:300]}")
            if response.headers.get("x-model-version") == version:
                return time.perf_counter() - t0, slowest
            if time.perf_counter() - t0 > 300:
                raise SystemExit(f"version {version} did not answer within 300 s")


def run_servers(client, commands, env, ports, logs, versions, repeat):
    """Start both servers, measure them alternately, then the promotions; stop them."""
    servers = {
        name: subprocess.Popen(command, env=env, stdout=logs[name], stderr=subprocess.STDOUT, text=True)
        for name, command in commands.items()
    }
    try:
        for name, server in servers.items():
            wait(f"http://127.0.0.1:{ports[name]}/ping", server, logs[name])
        sizes = {1: body(1), 100: body(100)}
        serve: dict[str, dict[int, list[dict]]] = {name: {1: [], 100: []} for name in servers}
        for _ in range(repeat):  # alternately: neither server gets the quieter machine
            for name in servers:
                for rows, payload in sizes.items():
                    serve[name][rows].append(load_test(f"http://127.0.0.1:{ports[name]}/invocations", payload))
        base = f"http://127.0.0.1:{ports['endpoint.py']}"
        promotion_s = [promotion(client, base, versions[(i + 1) % 2], sizes[1]) for i in range(repeat)]
        promotion_s, slowest_s = [p for p, _ in promotion_s], [w for _, w in promotion_s]
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
    return promotion_s, slowest_s, serve


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    os.chdir(P1)
    settings = load_settings()
    from mlflow import MlflowClient

    client = MlflowClient()
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    if not client.search_registered_models(filter_string=f"name='{MODEL}'"):
        client.create_registered_model(MODEL)
    model_id = champion.source.removeprefix("models:/")  # MLflow 3: the logged model m-...
    versions = [
        client.create_model_version(MODEL, champion.source, run_id=champion.run_id, model_id=model_id).version
        for _ in range(2)
    ]
    client.set_registered_model_alias(MODEL, "champion", versions[0])
    ports = {"endpoint.py": free_port(), "mlflow models serve": free_port()}
    env = os.environ | {"P1_MODEL_NAME": MODEL, "P1_ENDPOINT_PORT": str(ports["endpoint.py"])}
    env |= {"P1_ENDPOINT_POLL_SECONDS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    commands = {
        "endpoint.py": [sys.executable, "endpoint.py"],
        "mlflow models serve": [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion"]
        + ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports["mlflow models serve"])],
    }
    # Their logs go to files: an unread pipe fills with access-log lines and stalls the server.
    with contextlib.ExitStack() as files:
        logs = {name: files.enter_context(tempfile.TemporaryFile("w+")) for name in commands}
        promotion_s, slowest_s, serve = run_servers(client, commands, env, ports, logs, versions, repeat)
    promotions = {"promotion_s": [round(s, 3) for s in promotion_s]}
    promotions["slowest_answer_s"] = [round(s, 3) for s in slowest_s]
    print(json.dumps(promotions | {"serve": serve, "seconds": SECONDS}))


if __name__ == "__main__":
    main()
