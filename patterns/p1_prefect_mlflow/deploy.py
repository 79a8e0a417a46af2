"""Pattern 1's deployment: `p1-retrain`, the flow on a cron schedule and two event triggers.

Prefect owns the schedule and the triggers: `python flow.py serve` registers
the deployment with its cron schedule and the triggers of events.py (new
data, drift), and this process runs the flow runs Prefect creates from them
(or that are started from the UI, or with
`prefect deployment run p1-train-register-serve/p1-retrain`). For a work
pool and workers instead of this process, see docs/operations.md.
"""

from __future__ import annotations

from typing import Any

import events

DEPLOYMENT = "p1-retrain"
DEFAULT_CRON = "0 3 * * *"  # daily at 03:00 UTC


def serve(flow, cron: str, parameters: dict[str, Any]) -> None:
    """Serve `flow` as the deployment until this process is stopped. Its runs
    get `parameters` (only those given; the flow's defaults for the rest); a
    triggered run gets the event's data version on top."""
    flow.serve(name=DEPLOYMENT, cron=cron, parameters=parameters, triggers=events.triggers())
