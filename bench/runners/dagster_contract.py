"""Dagster's claim, measured: a typed asset rejects a bad value before the downstream step runs.

    python dagster_contract.py good|wrong_type|out_of_contract|untyped

Two assets, as a data contract between two teams would have them: `readings`
(loads sensor readings; what it returns is the case under test) and `fit` (the
costly downstream step, here a mean; it writes a marker file when it starts,
so "did it run?" is answered by the file system, not by Dagster's word).
`readings` declares its output as `Readings`, a DagsterType: a non-empty list
of finite floats in [0, 1000]. Dagster checks an output against its type when
the step returns, before the value is stored or handed on.

- good:            [12.5, 13.0, 12.75]             -> both steps succeed
- wrong_type:      "12.5,13.0,12.75" (a CSV string) -> rejected at readings' output
- out_of_contract: [12.5, -40.0, nan]               -> rejected at readings' output
- untyped:         the wrong_type value from an asset with no declared type:
                   the control case, showing what the contract prevents

Prints one JSON line: the run's success, the steps Dagster started and
finished, the failed step and its error, whether `fit` ran (its marker file),
and the seconds from the start of `materialize` to its return.
"""

import json
import math
import sys
import tempfile
import time
from pathlib import Path

from dagster import AssetIn, DagsterInstance, DagsterType, TypeCheck, asset, materialize

CASES = {
    "good": [12.5, 13.0, 12.75],
    "wrong_type": "12.5,13.0,12.75",
    "out_of_contract": [12.5, -40.0, math.nan],
    "untyped": "12.5,13.0,12.75",
}


def _check_readings(_context, value) -> TypeCheck:
    if not isinstance(value, list) or not value:
        return TypeCheck(False, description=f"expected a non-empty list of floats, got {type(value).__name__}")
    bad = [v for v in value if not isinstance(v, float) or not math.isfinite(v) or not 0 <= v <= 1000]
    if bad:
        return TypeCheck(False, description=f"{len(bad)} reading(s) not a finite float in [0, 1000]: {bad}")
    return TypeCheck(True)


Readings = DagsterType(name="Readings", type_check_fn=_check_readings, description="finite floats in [0, 1000]")


def build(case: str, marker: Path):
    value = CASES[case]

    if case == "untyped":

        @asset(name="readings")
        def readings():  # no declared type: Dagster passes anything on
            return value

    else:

        @asset(name="readings", dagster_type=Readings)
        def readings():
            return value

    @asset(name="fit", ins={"values": AssetIn("readings")})
    def fit(values) -> float:
        marker.write_text("fit started\n")
        return sum(values) / len(values)

    return [readings, fit]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CASES:
        raise SystemExit(f"usage: python dagster_contract.py {'|'.join(CASES)}  (got {argv!r})")
    case = argv[0]
    with tempfile.TemporaryDirectory() as home:
        marker = Path(home) / "fit-ran"
        started = time.perf_counter()
        result = materialize(
            build(case, marker), instance=DagsterInstance.ephemeral(tempdir=home), raise_on_error=False
        )
        took = time.perf_counter() - started
        events = result.all_events
        failures = result.get_step_failure_events()
        error = None
        if failures:
            # The error and, for a step that raised, what it raised (the root cause).
            err = failures[0].event_specific_data.error
            while err.cause is not None and err.cls_name == "DagsterExecutionStepExecutionError":
                err = err.cause
            message = err.message.strip().splitlines()[0].replace("dagster._core.errors.", "")
            error = message if message.startswith(err.cls_name) else f"{err.cls_name}: {message}"
        print(
            json.dumps(
                {
                    "case": case,
                    "success": result.success,
                    "steps_started": sorted({e.step_key for e in events if e.event_type_value == "STEP_START"}),
                    "steps_succeeded": sorted({e.step_key for e in events if e.event_type_value == "STEP_SUCCESS"}),
                    "failed_step": failures[0].step_key if failures else None,
                    "error": error,
                    "fit_ran": marker.exists(),
                    "run_s": round(took, 4),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
