"""The training slot (flow.training_slot) around Prefect's concurrency lease:
a release that fails once the training is done and recorded does not fail
the run (the lease expires by itself); a failure before that still does.
Prefect's client and lease are stood in for here; the stack tests
(tests/reliability/test_reliability_p1.py) restart the real server mid-run."""

from __future__ import annotations

import contextlib
import logging

import httpx
import prefect.client.orchestration
import prefect.concurrency.sync
import pytest

import flow


class Client:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def upsert_global_concurrency_limit_by_name(self, name, limit):
        pass


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch):
    """A lease whose release raises what Prefect's client raises with its server away."""
    monkeypatch.setattr(prefect.client.orchestration, "get_client", lambda **_: Client())
    monkeypatch.setattr(flow, "get_run_logger", lambda: logging.getLogger("p1-test"))

    @contextlib.contextmanager
    def concurrency(name, **_):
        yield
        raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(prefect.concurrency.sync, "concurrency", concurrency)


def test_a_release_that_fails_after_the_training_is_a_warning(lease, caplog) -> None:
    with caplog.at_level(logging.WARNING), flow.training_slot("k", timeout=1):
        pass
    assert "training slot p1-train-k not released" in caplog.text


def test_a_failure_inside_the_slot_still_fails_the_run(lease) -> None:
    with pytest.raises(ValueError, match="training failed"), flow.training_slot("k", timeout=1):
        raise ValueError("training failed")
