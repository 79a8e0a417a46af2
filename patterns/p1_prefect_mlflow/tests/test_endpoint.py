"""The live endpoint's own logic, with no service: which version answers, the swap,
and a version that cannot be loaded. Against MLflow: tests/p1_prefect_mlflow."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

import endpoint
from endpoint import Endpoint, Loaded


def scoring_app(answer: str, gate: asyncio.Event | None = None):
    """A stand-in for MLflow's scoring app: answers `answer`, after `gate` if given."""

    async def app(scope, receive, send) -> None:
        if gate is not None:
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": answer.encode()})

    return app


def client(app: Endpoint) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://endpoint")


def test_nothing_is_served_before_a_champion_is_loaded():
    async def main():
        async with client(Endpoint("m")) as http:
            return await http.get("/ping"), await http.post("/invocations", json={}), await http.get("/version")

    ping, invocations, version = asyncio.run(main())
    assert ping.status_code == invocations.status_code == 503
    assert "no champion of m is loaded yet" in invocations.json()["error"]
    assert version.status_code == 200 and version.json()["version"] is None


def test_every_answer_names_the_version_that_gave_it():
    app = Endpoint("m")
    app.current = Loaded("3", scoring_app("from v3"))

    async def main():
        async with client(app) as http:
            return await http.post("/invocations", json={}), await http.get("/version")

    answer, version = asyncio.run(main())
    assert answer.text == "from v3" and answer.headers["x-model-version"] == "3"
    assert version.json()["model"] == "m" and version.json()["version"] == "3"


def test_a_request_in_flight_finishes_on_the_model_it_started_with():
    app = Endpoint("m")

    async def main():
        gate = asyncio.Event()
        app.current = Loaded("1", scoring_app("from v1", gate))
        async with client(app) as http:
            first = asyncio.create_task(http.post("/invocations", json={}))
            await asyncio.sleep(0.05)  # the first request is inside v1's app, waiting
            app.current = Loaded("2", scoring_app("from v2"))  # the swap
            second = await http.post("/invocations", json={})
            gate.set()
            return await first, second

    first, second = asyncio.run(main())
    assert (first.text, first.headers["x-model-version"]) == ("from v1", "1")
    assert (second.text, second.headers["x-model-version"]) == ("from v2", "2")


class Registry:
    """The one registry call the follower makes: the alias's version."""

    def __init__(self, version: str) -> None:
        self.version = version

    def get_model_version_by_alias(self, name: str, alias: str):
        return type("ModelVersion", (), {"version": self.version})()


def test_a_version_that_cannot_load_is_refused_once_and_the_old_one_keeps_serving(monkeypatch, caplog):
    attempts = []

    def load(name: str, version: str) -> Loaded:
        attempts.append(version)
        if version == "2":
            raise OSError("model.skops: truncated file")
        return Loaded(version, scoring_app(f"from v{version}"))

    monkeypatch.setattr(endpoint, "load", load)
    app, registry = Endpoint("m"), Registry("1")
    endpoint.follow_once(app, registry)
    assert app.current.version == "1"
    registry.version = "2"
    with caplog.at_level(logging.ERROR, logger="p1.endpoint"):
        endpoint.follow_once(app, registry)
        endpoint.follow_once(app, registry)  # not tried again at every poll
    assert app.current.version == "1"
    assert attempts == ["1", "2"]
    assert "error: refused models:/m/2 (@champion): model.skops: truncated file" in caplog.text
    assert "fix: move @champion to a version that loads; version 1 keeps serving" in caplog.text
    assert app.describe()["refused"] == {"2": "model.skops: truncated file"}
    registry.version = "3"
    endpoint.follow_once(app, registry)
    assert app.current.version == "3"


def test_the_loaded_version_is_not_loaded_again(monkeypatch):
    monkeypatch.setattr(endpoint, "load", lambda name, v: pytest.fail("loaded again"))
    app = Endpoint("m")
    app.current = Loaded("1", scoring_app("x"))
    endpoint.follow_once(app, Registry("1"))
    assert app.current.version == "1"


def test_an_unreadable_alias_is_logged_once_and_what_is_loaded_serves_on(caplog):
    class Down:
        def get_model_version_by_alias(self, name: str, alias: str):
            raise ConnectionError("MLflow is restarting")

    app = Endpoint("m")
    app.current = Loaded("1", scoring_app("x"))
    with caplog.at_level(logging.WARNING, logger="p1.endpoint"):
        for _ in range(3):
            endpoint.follow_once(app, Down())
    assert caplog.text.count("cannot read m@champion (MLflow is restarting); serving what is loaded") == 1
    assert app.current.version == "1"
