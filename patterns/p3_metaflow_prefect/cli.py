"""The command line of `python flow.py` (flow.py hands over to `main()` here).

    python flow.py [--grid G] [--folds N] [--seed N] [--run-key K]   deploy, check workers, fan out
    python flow.py deploy                                            only the pool, deployment, automation
    python flow.py train-one [--n-estimators N] [--max-depth N] [--folds N] [--seed N]

An option passes on only what the user gave: the defaults are those of the
flows' signatures (flow.py) and of the Metaflow flow's Parameters
(trainflow.py), each declared once there. The run ends with a table of who
ran what and one stable line:

    Result: pattern=p3 status=ok runs=4 workers=2 best=P3TrainFlow/... ...
"""

from __future__ import annotations

import argparse
import sys
import time

from errors import P3Error
from keys import parse_grid
from settings import P3Settings, configure

FAN_OUT_OPTIONS = ("grid", "folds", "seed", "run_key")
TRAIN_ONE_OPTIONS = ("n_estimators", "max_depth", "folds", "seed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    nothing = argparse.SUPPRESS  # an option the user did not give is absent: the flow's default applies
    common = argparse.ArgumentParser(add_help=False, argument_default=nothing)
    common.add_argument("--folds", type=int, help="cross-validation folds (default: the flow's)")
    common.add_argument("--seed", type=int, help="random seed for folds and forest (default: the flow's)")
    parser = argparse.ArgumentParser(
        description="Pattern 3: Prefect workers distribute Metaflow runs; Metaflow keeps versions and lineage on S3.",
        parents=[common],
        argument_default=nothing,
    )
    parser.add_argument("--grid", help="N_ESTIMATORSxMAX_DEPTH,... (0: no depth limit; default: fan_out's in flow.py)")
    parser.add_argument(
        "--run-key",
        help="part of the logical run: the same grid, folds, seed and data reuse the finished runs "
        "unless the run key differs (any text, e.g. a date, to train again)",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("deploy", help="create/update the work pool, deployment and crash automation")
    one = sub.add_parser(
        "train-one", parents=[common], argument_default=nothing, help="one training run in this process, no worker"
    )
    one.add_argument("--n-estimators", type=int, help="trees in the forest (default and range: trainflow.py)")
    one.add_argument("--max-depth", type=int, help="tree depth, 0: no limit (default and range: trainflow.py)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = vars(parse_args(argv))
    command = args.get("command")
    settings = configure()
    # Prefect and Metaflow read the environment once, when imported: now that
    # it is set, import what uses them.
    import flow
    from checks import preflight, require_workers
    from dataset import publish_dataset
    from deploy import deploy

    try:
        if command == "train-one":
            preflight(settings)
            data_url, data_version = publish_dataset(settings)
            given = {k: v for k, v in args.items() if k in TRAIN_ONE_OPTIONS}
            state = flow.train_one(data_url=data_url, data_version=data_version, **given, return_state=True)
            print(f"Result: pattern=p3-one status=ok pathspec={_ok(state)['pathspec']}")
            return 0
        parse_grid(args.get("grid", flow.DEFAULT_GRID))  # a typo fails before anything is deployed
        preflight(settings)
        deployment_id = deploy(settings)
        print(
            f"deployment {flow.CHILD_FLOW}/{settings.deployment} ({deployment_id}) on work pool {settings.work_pool!r}"
        )
        if command == "deploy":
            return 0
        print(f"workers online: {', '.join(require_workers(settings))}")
        t0 = time.monotonic()
        given = {k: v for k, v in args.items() if k in FAN_OUT_OPTIONS}
        summary = _ok(flow.fan_out(**given, return_state=True))
        report(settings, summary, time.monotonic() - t0)
        return 0
    except P3Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1


def _ok(state) -> dict:
    """The flow's return value, or its P3Error re-raised for the command line."""
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    if isinstance(error, P3Error):
        raise error
    raise P3Error(
        f"the flow run ended {state.type.value}: {state.message}", "read the flow run's logs in the Prefect UI"
    )


def report(settings: P3Settings, summary: dict, seconds: float) -> None:
    from flow import METAFLOW_FLOW
    from keys import LINK_TAG

    rows, best = summary["rows"], summary["best"]
    ui = settings.prefect_api_url.removesuffix("/api")
    print(
        f"\nFan-out {summary['flow_run_id']} in {seconds:.1f} s, logical run {summary['logical_run']}, "
        f"dataset sha256 {summary['data_version'][:12]}:"
    )
    print(f"  {'grid':<8} {'worker':<24} {'prefect flow run':<26} {'metaflow run':<36} cv_accuracy")
    for r in rows:
        flag = "  <- best" if r is best else ""
        retry = f" (attempt {r['attempts']})" if r["attempts"] > 1 else ""
        retry += " (reused)" if r["reused_from"] else ""
        print(
            f"  {r['grid']:<8} {r['worker']:<24} {r['prefect_flow_run'] + retry:<26} "
            f"{r['metaflow_pathspec']:<36} {r['cv_accuracy']:.4f}{flag}"
        )
    print(f"  Prefect UI: {ui}/runs/flow-run/{summary['flow_run_id']} (artifact p3-fan-out)")
    print(f"  Metaflow:   Flow('{METAFLOW_FLOW}').runs('{LINK_TAG}:<id>') reads any of them back from S3")
    workers = sorted({r["worker"] for r in rows})
    reused = sum(bool(r["reused_from"]) for r in rows)
    if reused:
        print(
            f"  {reused} of {len(rows)} run(s) reused from an earlier fan-out of this logical run "
            "(same data, grid, folds, seed): pass --run-key to train again"
        )
    print(
        f"Result: pattern=p3 status=ok runs={len(rows)} workers={len(workers)} best={best['metaflow_pathspec']} "
        f"best_grid={best['grid']} cv_accuracy={best['cv_accuracy']:.4f} data_sha256={summary['data_version'][:12]} "
        f"prefect_flow_run={summary['flow_run_id']} logical_run={summary['logical_run']} reused={reused}"
    )
