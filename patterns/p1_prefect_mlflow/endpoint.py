"""Pattern 1's live endpoint: the champion, served and followed.

Who owns what:
- MLflow owns the model (`models:/<model>@champion`, moved only by the flow's
  champion gate or a person) and the scoring protocol: every request goes to
  the app of MLflow's scoring server (`/invocations`, `/ping`), unchanged.
- This program owns one thing: which version answers. It reads the alias every
  P1_ENDPOINT_POLL_SECONDS; when the alias moved, it loads the new version
  beside the old one (only files that match its training run's record,
  integrity.py), then swaps one reference. A request runs on the model it
  started with, so none fails or waits during a swap. A version that cannot
  be loaded is refused with a log line, and the old champion keeps serving.

Polling, not an event: the alias moves from the flow, the MLflow UI or any
client, and the registry is the one place that sees every move.

    python endpoint.py    serve on 127.0.0.1:P1_ENDPOINT_PORT until stopped (P1_ENDPOINT_HOST)

Every answer names the version that gave it (header X-Model-Version), and
GET /version says what is loaded: {"model", "version", "loaded_at", "refused"}.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient

import integrity
from settings import P1Settings, load_settings

log = logging.getLogger("p1.endpoint")


@dataclass(frozen=True)
class Loaded:
    version: str
    app: object  # MLflow's scoring app (FastAPI) for this version
    loaded_at: float = field(default_factory=time.time)


class Endpoint:
    """An ASGI app: MLflow's scoring app of the current champion, plus /version."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.current: Loaded | None = None  # replaced whole, never changed in place
        self.refused: dict[str, str] = {}  # version -> why it was not loaded
        self.unreadable = ""  # the last reason the alias could not be read (logged once)

    def describe(self) -> dict:
        current = self.current
        return {
            "model": self.model_name,
            "version": current.version if current else None,
            "loaded_at": current.loaded_at if current else None,
            "refused": self.refused,
        }

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":  # nothing to set up: the model is loaded before
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        current = self.current  # one read: this request stays on this model
        if scope["path"] == "/version":
            await _json(send, 200, self.describe())
            return
        if current is None:
            await _json(send, 503, {"error": f"no champion of {self.model_name} is loaded yet"})
            return
        header = (b"x-model-version", current.version.encode())

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await current.app(scope, receive, send_with_version)


async def _json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# ## Follow the alias
def load(model_name: str, version: str) -> Loaded:
    """The scoring app of a verified copy of `version` (raises if it cannot be)."""
    from mlflow.pyfunc import scoring_server

    with tempfile.TemporaryDirectory() as tmp:
        _, local = integrity.verified_copy(model_name, "champion", Path(tmp), version=version)
        app = scoring_server.init(mlflow.pyfunc.load_model(str(local)))
    return Loaded(version, app)


def follow_once(endpoint: Endpoint, client: MlflowClient) -> None:
    """Load the champion if the alias points elsewhere than the loaded version."""
    try:
        wanted = client.get_model_version_by_alias(endpoint.model_name, "champion").version
    except Exception as exc:  # the server down, no such model...: keep serving, read again later
        if str(exc) != endpoint.unreadable:  # once per reason, not at every poll
            endpoint.unreadable = str(exc)
            log.warning("cannot read %s@champion (%s); serving what is loaded", endpoint.model_name, exc)
        return
    endpoint.unreadable = ""
    current = endpoint.current
    if (current and current.version == wanted) or wanted in endpoint.refused:
        return
    uri = f"models:/{endpoint.model_name}/{wanted} (@champion)"
    try:
        loaded = load(endpoint.model_name, wanted)
    except Exception as exc:  # anything: a broken version must never stop the endpoint
        endpoint.refused[wanted] = str(exc)[:500]
        kept = f"version {current.version} keeps serving" if current else "nothing is served yet"
        log.error("error: refused %s: %s\nfix: move @champion to a version that loads; %s", uri, exc, kept)
        return
    endpoint.current = loaded
    log.info("serving %s, was %s", uri, current.version if current else "nothing")


def follow(endpoint: Endpoint, settings: P1Settings, stop: threading.Event) -> None:
    client = MlflowClient()
    while not stop.is_set():
        follow_once(endpoint, client)
        stop.wait(settings.endpoint_poll_seconds)


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a log, not a terminal
    settings = load_settings()
    endpoint = Endpoint(settings.model_name)
    follow_once(endpoint, MlflowClient())  # the champion before the first request
    stop = threading.Event()
    threading.Thread(target=follow, args=(endpoint, settings, stop), name="follow-champion", daemon=True).start()
    where = f"http://{settings.endpoint_host}:{settings.endpoint_port}"
    log.info("endpoint for %s@champion on %s", settings.model_name, where)
    try:
        uvicorn.run(endpoint, host=settings.endpoint_host, port=settings.endpoint_port, log_level="warning")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
