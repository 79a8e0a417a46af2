"""Pattern 1's deploy step: serve the champion and score a batch over HTTP.

MLflow owns the model being served (`models:/<model>@champion`) and the
scoring server (the FastAPI app `mlflow models serve` runs); this module
starts it on 127.0.0.1 for one batch and stops it again. For a long-running
endpoint, see docs/operations.md.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from prefect import get_run_logger, task

import integrity
from errors import P1Error
from settings import P1Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@task(retries=1, retry_delay_seconds=2)
def serve_and_score(settings: P1Settings, batch: pd.DataFrame) -> list[int]:
    """Load the champion by its alias, serve it with MLflow's scoring server
    (the FastAPI app `mlflow models serve` runs) on 127.0.0.1, POST the batch
    to /invocations, check one prediction came back per row, stop the server.

    The server runs in this process, on its own thread: starting a separate
    `mlflow models serve` costs ~15 s of imports on two cores, for the same app.
    """
    import threading

    import uvicorn
    from mlflow.pyfunc import scoring_server

    with tempfile.TemporaryDirectory() as tmp:
        version, local = integrity.verified_copy(settings.model_name, "champion", Path(tmp))
        app = scoring_server.init(mlflow.pyfunc.load_model(str(local)))
    uri = f"models:/{settings.model_name}/{version} (@champion)"
    port = settings.serve_port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="model-server", daemon=True)
    log = get_run_logger()
    log.info("Serving %s on http://127.0.0.1:%d", uri, port)
    thread.start()
    try:
        deadline = time.monotonic() + settings.serve_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise P1Error(
                    f"the model server for {uri} did not start on port {port}",
                    "free the port named by P1_SERVE_PORT (0 picks a free one), or raise P1_SERVE_TIMEOUT",
                )
            time.sleep(0.05)
        httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5).raise_for_status()
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": json.loads(batch.to_json(orient="split", index=False))},
            timeout=60,
        )
        if response.status_code != 200:
            raise P1Error(
                f"the model server answered {response.status_code}: {response.text[:500]}",
                "check the served model's signature against the batch's columns",
            )
        predictions = [int(p) for p in response.json()["predictions"]]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    if len(predictions) != len(batch):
        raise P1Error(
            f"the model server returned {len(predictions)} predictions for {len(batch)} rows",
            "check the served model's signature against the batch's columns",
        )
    log.info("Scored %d rows over HTTP", len(predictions))
    return predictions
