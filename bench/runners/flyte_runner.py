"""The workload as a Flyte workflow run locally by flytekit: one task per step.

Calling a `@workflow` in Python runs it locally, in this process: flytekit
compiles the workflow, then executes each task with its inputs and outputs
converted to Flyte literals and back through its type engine (the typed
interface a cluster run uses), with a local sandbox folder for any files.
No Flyte cluster (`flytectl demo`, propeller) runs: on one, each task would
be a pod. The fan-out binds ten task outputs to the join's `list[str]` input.
Runs in its own environment, bench/envs/flyte.
"""

import time

import protocol
import workload

shape = protocol.shape_from_argv("flyte")
from flytekit import task, workflow  # noqa: E402 - timed: importing the tool is part of its cost


@task
def step(value: str, i: int) -> str:
    return workload.step(value, i)


@task
def join(values: list[str]) -> str:
    return workload.join(values)


@workflow
def chain() -> str:
    value = workload.SEED
    for i in range(1, workload.N + 1):
        value = step(value=value, i=i)
    return value


@workflow
def fanout() -> str:
    return join(values=[step(value=workload.SEED, i=i) for i in range(1, workload.N + 1)])


imported = time.perf_counter()
started = time.perf_counter()
result = (chain if shape == "chain" else fanout)()
protocol.report("flyte", shape, result, imported, started, time.perf_counter())
