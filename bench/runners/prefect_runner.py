"""The workload as a Prefect 3 flow: one task run per step, against PREFECT_API_URL.

Each step is a task run the server records (states, timings); the fan-out
submits its ten steps to Prefect's default task runner (a thread pool: the
work holds the GIL, so they do not run in parallel), and the join waits for
their futures. Runs in pattern 4's environment (the patterns' Prefect, no MLflow).
"""

import time

import protocol
import workload

shape = protocol.shape_from_argv("prefect")
from prefect import flow, task  # noqa: E402 - timed: importing the tool is part of its cost


@task(name="step")
def step(value: str, i: int) -> str:
    return workload.step(value, i)


@task(name="join")
def join(values: list[str]) -> str:
    return workload.join(values)


@flow(name="bench-chain")
def chain() -> str:
    value = workload.SEED
    for i in range(1, workload.N + 1):
        value = step(value, i)
    return value


@flow(name="bench-fanout")
def fanout() -> str:
    futures = [step.submit(workload.SEED, i) for i in range(1, workload.N + 1)]
    return join(futures)  # Prefect resolves the futures before the join runs


imported = time.perf_counter()
started = time.perf_counter()
result = (chain if shape == "chain" else fanout)()
protocol.report("prefect", shape, result, imported, started, time.perf_counter())
