"""The workload as a KFP v2 pipeline run by kfp.local (SubprocessRunner), one component per step.

Each step is a lightweight Python component: kfp.local writes its inputs,
starts a new Python process for it (`python -m kfp.dsl.executor_main`), and
reads its outputs back from the pipeline root (BENCH_KFP_ROOT), the way
pattern 2 runs its training pipeline (use_venv=False, install_kfp_package=False:
the environment's own kfp, nothing installed at run time). Runs in pattern 2's
pipeline environment, with its bin folder first on PATH.

The components are self-contained source (kfp.local runs them from their
text), so `step` repeats workload.step; the tests check the result equals
workload.expected(). The join takes the ten values as ten parameters: KFP
has no list-of-task-outputs input outside dsl.ParallelFor + dsl.Collected.
"""

import os
import time

import protocol
import workload

shape = protocol.shape_from_argv("kfp")
from kfp import dsl, local  # noqa: E402 - timed: importing the tool is part of its cost


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def step(value: str, i: int, rounds: int) -> str:
    import hashlib

    digest = f"{value}:{i}".encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def join(v1: str, v2: str, v3: str, v4: str, v5: str, v6: str, v7: str, v8: str, v9: str, v10: str) -> str:
    import hashlib

    return hashlib.sha256("|".join([v1, v2, v3, v4, v5, v6, v7, v8, v9, v10]).encode()).hexdigest()


assert workload.N == 10, "join() takes exactly ten values: change it with workload.N"


@dsl.pipeline(name="bench-chain")
def chain() -> str:
    value = workload.SEED
    for i in range(1, workload.N + 1):
        value = step(value=value, i=i, rounds=workload.ROUNDS).output
    return value


@dsl.pipeline(name="bench-fanout")
def fanout() -> str:
    leaves = [step(value=workload.SEED, i=i, rounds=workload.ROUNDS).output for i in range(1, workload.N + 1)]
    return join(**{f"v{i}": leaf for i, leaf in enumerate(leaves, start=1)}).output


root = os.environ.get("BENCH_KFP_ROOT") or "/tmp/bench-kfp-root"
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
imported = time.perf_counter()
started = time.perf_counter()
task = (chain if shape == "chain" else fanout)()
finished = time.perf_counter()
protocol.report("kfp", shape, task.output, imported, started, finished)
