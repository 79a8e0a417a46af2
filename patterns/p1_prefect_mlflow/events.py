"""Pattern 1's events: what starts a retraining besides the cron schedule.

Prefect owns both events and what they start. Each names a data version:

- `p1.data.published`: `python data.py publish --batch NAME` (or `--data-file
  yours.csv`) pushed a new data version to the DVC remote.
- `p1.drift.detected`: `python flow.py score` found the scored batch unlike the
  champion's training data (a drift share at or above P1_DRIFT_SHARE).

The `p1-retrain` deployment carries one trigger per event (`triggers()`): each
starts a run that trains on exactly the version the event names, records the
event (flow parameter `trigger_event`), and goes through the champion gate.
The same event twice starts two runs and one training: the second finds the
first's training key (same data, same parameters) and reuses it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

DATA_PUBLISHED = "p1.data.published"
DRIFT_DETECTED = "p1.drift.detected"


@dataclass(frozen=True)
class Emitted:
    name: str
    id: str

    def __str__(self) -> str:  # what the flow records: its `trigger_event` parameter
        return f"{self.name}:{self.id}"


def emit(name: str, data_file: str, data_md5: str, **details: Any) -> Emitted:
    """Emit `name` about a data version to the Prefect API and wait until the
    server has it (Prefect's own `emit_event` sends in the background and
    never says whether the event arrived)."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    event = Event(
        event=name,
        resource={"prefect.resource.id": f"p1.data.{data_md5}", "prefect.resource.name": data_file},
        payload={"data_file": data_file, "data_md5": data_md5, **details},
    )

    async def send() -> None:
        async with get_events_client(checkpoint_every=1) as client:  # 1: confirmed before leaving
            await client.emit(event)

    try:
        asyncio.run(send())
    except Exception as exc:  # unreachable, refused login, closed socket: the same fix
        from prefect.settings import get_current_settings

        from errors import P1Error

        raise P1Error(
            f"the Prefect API at {get_current_settings().api.url} did not take the event {name} "
            f"({type(exc).__name__}: {exc}); nothing is retrained for data version {data_md5}",
            "check PREFECT_API_URL and PREFECT_API_AUTH_STRING (`make status`), then publish again: "
            "the same data is pushed once and announced again",
        ) from exc
    return Emitted(name, str(event.id))


def triggers() -> list:
    """The deployment's triggers: each event starts a run on the version it names."""
    from prefect.events import DeploymentEventTrigger

    parameters = {
        "data_file": "{{ event.payload.data_file }}",
        "data_md5": "{{ event.payload.data_md5 }}",
        "trigger_event": "{{ event.event }}:{{ event.id }}",
    }
    return [
        DeploymentEventTrigger(
            name=f"retrain on {name}",
            expect={name},
            match={"prefect.resource.id": "p1.data.*"},
            parameters=parameters,
        )
        for name in (DATA_PUBLISHED, DRIFT_DETECTED)
    ]
