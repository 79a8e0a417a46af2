"""Flyte's claim, measured: a dynamic workflow fans out a number of tasks decided at run time.

    python flyte_dynamic.py ROWS [ROWS ...]

A workflow gets a row count; a first task decides the number of chunks from it
at run time (one per CHUNK rows, rounded up); a `@dynamic` workflow then starts
one `step` task per chunk (each the decision matrix's ~30 ms task), and a join
task combines their outputs. A static `@workflow` cannot do this: its body runs
once, at compile time, on promises, so `range()` of a task's output fails there
(the demo tries it and reports the error). Locally flytekit runs the dynamic
workflow in this process; on a cluster its body runs in a pod and returns the
sub-workflow it built, which propeller then schedules.

Prints one JSON line per ROWS: the chunks decided at run time, the step tasks
that ran (each appends a line to a file: counted, not inferred), whether the
result is plain Python's answer for that many chunks (so every task really
ran), and the seconds the workflow took; then one line with the static
workflow's error.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import workload
from flytekit import dynamic, task, workflow

CHUNK = 1000


@task
def plan(rows: int) -> int:
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    return -(-rows // CHUNK)  # ceil(rows / CHUNK)


@task
def step(value: str, i: int) -> str:
    # One line per execution, so the demo counts the tasks that really ran.
    with open(os.environ["FLYTE_DEMO_STEP_LOG"], "a") as log:
        log.write(f"{i}\n")
    return workload.step(value, i)


@task
def join(values: list[str]) -> str:
    return workload.join(values)


@dynamic
def fan_out(chunks: int) -> list[str]:
    # Here `chunks` is a real int: the body runs when the upstream task is done.
    return [step(value=workload.SEED, i=i) for i in range(1, chunks + 1)]


@workflow
def by_rows(rows: int) -> tuple[int, str]:
    chunks = plan(rows=rows)
    return chunks, join(values=fan_out(chunks=chunks))


def static_attempt() -> str:
    """The same fan-out as a static workflow: its body sees a promise, not an int."""
    try:

        @workflow
        def static_by_rows(rows: int) -> str:
            chunks = plan(rows=rows)
            return join(values=[step(value=workload.SEED, i=i) for i in range(1, chunks + 1)])

        static_by_rows(rows=CHUNK)  # flytekit compiles a workflow on its first call
    except Exception as exc:  # noqa: BLE001 - the error is what this reports
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return "no error: a static workflow accepted a run-time loop bound"


def main(argv: list[str]) -> int:
    try:
        sizes = [int(a) for a in argv]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"usage: python flyte_dynamic.py ROWS [ROWS ...]  (whole numbers >= 1; got {argv!r})")
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["FLYTE_DEMO_STEP_LOG"] = str(Path(tmp) / "steps")
            Path(os.environ["FLYTE_DEMO_STEP_LOG"]).touch()
            started = time.perf_counter()
            chunks, result = by_rows(rows=rows)
            took = time.perf_counter() - started
            ran = len(Path(os.environ["FLYTE_DEMO_STEP_LOG"]).read_text().splitlines())
        want = workload.join([workload.step(workload.SEED, i) for i in range(1, chunks + 1)])
        print(
            json.dumps(
                {
                    "rows": rows,
                    "chunks_decided_at_run_time": chunks,
                    "step_tasks_run": ran,
                    "result_is_plain_pythons": result == want,
                    "run_s": round(took, 4),
                }
            ),
            flush=True,
        )
    print(json.dumps({"static_workflow": static_attempt()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
