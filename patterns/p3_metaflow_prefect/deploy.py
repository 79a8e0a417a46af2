"""Deployment: the work pool, the training flow's deployment and crash
detection, all idempotent (`python flow.py deploy` runs this alone)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from prefect.client.orchestration import get_client

from flow import train_one
from settings import PATTERN_DIR, P3Settings


def deploy(s: P3Settings) -> str:
    """Create the process work pool (once) and deploy `train_one` from this
    folder to it; returns the deployment id."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):  # idempotent
        client.create_work_pool(WorkPoolCreate(name=s.work_pool, type="process"))
    deployment_id = train_one.from_source(source=str(PATTERN_DIR), entrypoint="flow.py:train_one").deploy(
        name=s.deployment,
        work_pool_name=s.work_pool,
        # Flow runs send heartbeats, so a run whose process dies is detected.
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(s.heartbeat_seconds)}},
        tags=["p3"],
        description="One Metaflow training run (trainflow.py), tagged with this flow run's id.",
        print_next_steps=False,
        ignore_warnings=True,
    )
    ensure_crash_detection(s, str(deployment_id))
    return str(deployment_id)


def ensure_crash_detection(s: P3Settings, deployment_id: str) -> None:
    """A killed worker takes its flow run's process with it, and nothing is left
    to report the crash. Prefect's answer is heartbeats plus a proactive
    automation: no heartbeat (and no final state) within `crash_after_seconds`
    -> the run is set CRASHED. The fan-out then resubmits it."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
        after={"prefect.flow-run.heartbeat"},
        expect={
            "prefect.flow-run.heartbeat",
            "prefect.flow-run.Completed",
            "prefect.flow-run.Failed",
            "prefect.flow-run.Cancelled",
            "prefect.flow-run.Crashed",
        },
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=s.crash_after_seconds),
    )
    actions = [
        ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {s.crash_after_seconds} s: the process running this flow run is gone",
        )
    ]
    name = f"{s.deployment}-crash-detection"
    try:
        automation = Automation.read(name=name)
    except ValueError:
        description = "Marks p3 runs CRASHED when heartbeats stop"
        Automation(name=name, description=description, trigger=trigger, actions=actions).create()
        return
    automation.trigger, automation.actions, automation.enabled = trigger, actions, True
    automation.update()
