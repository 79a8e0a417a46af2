"""What every runner of the decision matrix shares: its command line and its report.

    python <tool>_runner.py chain|fanout

prints, as its last line, one JSON object:
    {"runner": ..., "shape": ..., "tasks": 10, "rounds": ..., "result": "<hex>",
     "import_s": seconds to import the tool and define the work,
     "run_s": seconds from starting the flow/DAG/pipeline until its result is back}
The benchmark times the whole process too (interpreter start included).
Standard library only: it runs in each tool's own environment.
"""

from __future__ import annotations

import json
import sys
import time

import workload

STARTED = time.perf_counter()  # the first runner import: close enough to the process start


def shape_from_argv(runner: str) -> str:
    args = sys.argv[1:]
    if len(args) != 1 or args[0] not in workload.SHAPES:
        raise SystemExit(f"usage: python {runner}_runner.py {'|'.join(workload.SHAPES)}  (got {args!r})")
    return args[0]


def report(runner: str, shape: str, result: str, imported: float, started: float, finished: float) -> None:
    print(
        json.dumps(
            {
                "runner": runner,
                "shape": shape,
                "tasks": workload.task_count(shape),
                "rounds": workload.ROUNDS,
                "result": result,
                "import_s": round(imported - STARTED, 4),
                "run_s": round(finished - started, 4),
            }
        ),
        flush=True,
    )
