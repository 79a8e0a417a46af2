"""The measured decision matrix: bench/results/decision-matrix.md and .png, from `make bench`'s results.

    python bench/report.py                 the newest bench/results/<UTC>.json (bench/run.py)
                                           and, if there is one, the newest compose-<UTC>.json
    python bench/report.py RESULT.json     a given run

`make bench` runs it last. Nothing here measures anything: it only arranges
what bench/run.py, bench/matrix.py and bench/compose.py measured, so every
figure in the report comes from one run of `make bench` on one machine
(the compose figures from the same `make bench` when it ran them, or from
the newest `make bench-compose`, whose date the report prints).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOOLS = ["prefect", "airflow", "kfp", "metaflow", "metaflow_local", "dagster", "flyte"]
SHORT = {
    "prefect": "Prefect",
    "airflow": "Airflow",
    "kfp": "KFP (local)",
    "metaflow": "Metaflow (S3)",
    "metaflow_local": "Metaflow (local)",
    "dagster": "Dagster",
    "flyte": "Flyte (local)",
}
PATTERN_KEYS = {
    "pattern1_warm": "1: Prefect + MLflow (`make pattern-1`, idempotent path)",
    "pattern2_warm": "2: Airflow + KFP (`make pattern-2`, ETL run then the training run its asset event starts)",
    "pattern3_warm": "3: Metaflow + Prefect workers (`make pattern-3`, 4 runs on 2 workers)",
    "pattern4_cycle": "4: GitHub Actions' cycle for Prefect (`make pattern-4`, new release)",
}


def newest(pattern: str) -> Path | None:
    found = sorted(RESULTS.glob(pattern))
    return found[-1] if found else None


def load(path: Path | None = None) -> tuple[dict, dict | None, Path]:
    path = path or newest("2*.json")
    if path is None or not path.exists():
        raise SystemExit(f"error: no benchmark result in {RESULTS}: run `make bench` first")
    data = json.loads(path.read_text())
    if "side_by_side" not in data:
        raise SystemExit(
            f"error: {path} has no side-by-side section (an older bench/run.py made it): run `make bench` again"
        )
    if not data.get("measures"):
        # A `make bench-matrix` run (BENCH_ONLY=matrix): the stack and pattern
        # figures come from the newest full run, named in the report.
        for full in sorted(RESULTS.glob("2*.json"), reverse=True):
            borrowed = json.loads(full.read_text())
            if borrowed.get("measures"):
                data["measures"] = borrowed["measures"]
                data["measures_from"] = {
                    "file": full.name,
                    "date_utc": borrowed["machine"]["date_utc"],
                    "commit": borrowed["machine"]["commit"],
                }
                break
    compose_path = newest("compose-*.json")
    compose = json.loads(compose_path.read_text()) if compose_path else None
    return data, compose, path


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: float) -> str:
    return f"{value * 1000:.0f}"


def measures(data: dict) -> dict[str, dict]:
    return {m["key"]: m for m in data["measures"]}


def present(rows: dict) -> list[str]:
    """The tools this result has (an older result may lack a runner)."""
    return [t for t in TOOLS if (t, "chain") in rows and (t, "fanout") in rows]


def side_table(data: dict) -> list[str]:
    sbs = data["side_by_side"]
    rows = {(r["runner"], r["shape"]): r for r in sbs["rows"]}
    out = [
        "| runner | chain: run s | chain: overhead per task, ms | fan-out: run s | fan-out: overhead per task, ms "
        "| import s | whole process, chain s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for runner in ["plain", *present(rows)]:
        c, f = rows[(runner, "chain")], rows[(runner, "fanout")]
        overhead_c = "(baseline)" if runner == "plain" else _ms(c["per_task_overhead_s"])
        overhead_f = "(baseline)" if runner == "plain" else _ms(f["per_task_overhead_s"])
        out.append(
            f"| {c['title']} | {_f(c['run_s'], 2)} | {overhead_c} | {_f(f['run_s'], 2)} | {overhead_f} "
            f"| {_f(statistics.median([c['import_s'], f['import_s']]), 1)} | {_f(c['process_s'], 1)} |"
        )
    return out


# What each tool needs besides its environment, and where the patterns use it
# (facts about this repository's setup, not measurements).
NEEDS = {
    "prefect": (
        "a Prefect server (or Cloud); workers for deployments",
        "1, 3, 4",
        "patterns/p4_github_actions_prefect",
    ),
    "airflow": (
        "a metadata database; scheduler, api-server, dag-processor to run on a schedule",
        "2",
        "patterns/p2_airflow_kfp",
    ),
    "kfp": (
        "nothing locally (kfp.local); a Kubernetes cluster with KFP for real runs",
        "2",
        "patterns/p2_airflow_kfp/pipeline",
    ),
    "metaflow": ("an S3 bucket for the datastore (a metadata service optional)", "3", "patterns/p3_metaflow_prefect"),
    "metaflow_local": ("nothing (local datastore: one machine only)", "-", "patterns/p3_metaflow_prefect"),
    "dagster": (
        "nothing for `materialize`; `dagster dev` (webserver, daemon) and a run/event database for schedules and UI",
        "- (bench only)",
        "bench/envs/dagster",
    ),
    "flyte": (
        "nothing for local runs; a Flyte cluster (Kubernetes, flyteadmin, propeller, a blob store) for real runs",
        "- (bench only)",
        "bench/envs/flyte",
    ),
}


def matrix_table(data: dict) -> list[str]:
    rows = {(r["runner"], r["shape"]): r for r in data["side_by_side"]["rows"]}
    envs = {e["project"]: e for e in data.get("environments", [])}
    out = [
        "| tool | overhead per task: chain / fan-out, ms | import, s "
        "| its environment, fresh: uv cache warm / empty, s (installed MB) | needs running | patterns |",
        "|---|---:|---:|---:|---|---|",
    ]
    for tool in present(rows):
        c, f = rows[(tool, "chain")], rows[(tool, "fanout")]
        needs, patterns, project = NEEDS[tool]
        env = envs.get(project)
        install = "-" if env is None else f"{_f(env['cached_s'])} / {_f(env['empty_cache_s'])} ({env['size_mb']})"
        out.append(
            f"| {c['title']} | {_ms(c['per_task_overhead_s'])} / {_ms(f['per_task_overhead_s'])} "
            f"| {_f(statistics.median([c['import_s'], f['import_s']]))} | {install} | {needs} | {patterns} |"
        )
    return out


def setup_table(data: dict, compose: dict | None) -> list[str]:
    m = measures(data)
    out = ["| what | median s | n | note |", "|---|---:|---:|---|"]
    for env in data.get("environments", []):
        out.append(
            f"| fresh environment: {env['environment']} (`{env['project']}`), uv cache warm "
            f"| {_f(env['cached_s'])} | {len(env['cached_samples_s'])} | {env['size_mb']} MB installed |"
        )
    for env in data.get("environments", []):
        out.append(
            f"| fresh environment: {env['environment']}, empty uv cache (every wheel downloaded) "
            f"| {_f(env['empty_cache_s'])} | 1 | depends on the network to the package index |"
        )
    migrate = data["side_by_side"].get("airflow_db_migrate_s") or []
    if migrate:
        out.append(f"| Airflow: `airflow db migrate` (SQLite, once per Airflow home) | {_f(migrate[0])} | 1 | |")
    for key, what in (
        ("stack_cold_start", "local tier: `make up`, empty state"),
        ("stack_warm_start", "local tier: `make up`, stopped stack"),
    ):
        if key in m:
            out.append(f"| {what} | {_f(m[key]['median_s'])} | {m[key]['n']} | SeaweedFS, Prefect, MLflow |")
    if compose:
        date = compose["machine"]["date_utc"]
        for c in compose["measures"]:
            out.append(f"| compose tier: {c['measure']} | {_f(c['median_s'])} | {c['n']} | measured {date} |")
    else:
        out.append("| compose tier | - | 0 | not measured: `make bench-compose` |")
    return out


def pattern_table(data: dict) -> list[str]:
    m = measures(data)
    out = [
        "| pattern | wall s | CD stages s | start-up and exit s | orchestration s | work s | work is |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, title in PATTERN_KEYS.items():
        splits = m.get(key, {}).get("split") or []
        if not splits:
            out.append(f"| {title} | {_f(m.get(key, {}).get('median_s'))} | - | - | - | - | not split (see notes) |")
            continue
        med = {k: statistics.median(s[k] for s in splits) for k in splits[0] if k.endswith("_s")}
        out.append(
            f"| {title} | {_f(med['wall_s'])} | {_f(med.get('cd_stages_s'))} | {_f(med['startup_exit_s'])} "
            f"| {_f(med['orchestration_s'])} | {_f(med['work_s'])} | {', '.join(splits[0]['work_units'])} |"
        )
    return out


DAGSTER_CASES = {
    "good": "a valid list of readings",
    "wrong_type": "a CSV string where the list is declared",
    "out_of_contract": "a list with a negative reading and a NaN",
    "untyped": "the CSV string from an asset with no declared type (control)",
}


def strengths_section(data: dict) -> list[str]:
    st = data.get("strengths")
    if not st:
        return []
    plain = next(r for r in data["side_by_side"]["rows"] if r["runner"] == "plain" and r["shape"] == "chain")
    plain_ms = _ms(plain["run_s"] / plain["tasks"])
    out = [
        "## Dagster's and Flyte's claims, run locally",
        "",
        "**Dagster: typed outputs reject a bad value before the downstream step runs** "
        "(`bench/envs/dagster/.venv/bin/python bench/runners/dagster_contract.py CASE`). "
        "`readings` declares its output as a DagsterType (finite floats in [0, 1000]); `fit` is the downstream step "
        "and writes a marker file when it starts.",
        "",
        "| value returned by `readings` | run | failed step | `fit` started | error | median s (n) | claim holds |",
        "|---|---|---|---|---|---:|---|",
    ]
    for c in st["dagster_contract"]:
        error = re.sub(
            r'Type check failed for step output "(\w+)" - expected type "(\w+)"\. Description: ',
            r"output \1 is not \2: ",
            c["error"] or "-",
        ).replace("|", "\\|")
        out.append(
            f"| {DAGSTER_CASES.get(c['case'], c['case'])} | {'succeeded' if c['success'] else 'failed'} "
            f"| {c['failed_step'] or '-'} | {'yes' if c['fit_ran'] else 'no'} | {error} "
            f"| {_f(c['run_s'], 2)} ({c['n']}) | {'yes' if c['claim_holds'] else '**no**'} |"
        )
    out += [
        "",
        "**Flyte: a dynamic workflow fans out a number of tasks decided at run time** "
        "(`bench/envs/flyte/.venv/bin/python bench/runners/flyte_dynamic.py ROWS ...`). A first task turns the row "
        "count into chunks of 1,000; a `@dynamic` workflow starts one step task per chunk (each the matrix's task); "
        "a join combines them. Each step appends a line to a file, so the tasks run are counted.",
        "",
        "| rows | chunks decided at run time | step tasks run | result is plain Python's | median s (n) "
        f"| per step task, ms (plain Python: {plain_ms}) | claim holds |",
        "|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in st["flyte_dynamic"]:
        per = r["run_s"] / max(r["step_tasks_run"], 1)  # plan and join included
        out.append(
            f"| {r['rows']:,} | {r['chunks_decided_at_run_time']} | {r['step_tasks_run']} "
            f"| {'yes' if r['result_is_plain_pythons'] else '**no**'} | {_f(r['run_s'], 2)} ({r['n']}) "
            f"| {_ms(per)} | {'yes' if r['claim_holds'] else '**no**'} |"
        )
    out += ["", f"The same loop in a static `@workflow`: `{st['flyte_static_workflow']}`", ""]
    return out


def render(data: dict, compose: dict | None, source: Path) -> str:
    info = data["machine"]
    w = data["side_by_side"]["workload"]
    return "\n".join(
        [
            "# Measured decision matrix",
            "",
            f"`{'make bench-matrix' if data.get('only') == 'matrix' else 'make bench'}` "
            f"(BENCH_REPEAT={data['repeat']}, medians), "
            f"{info['date_utc']}, commit {info['commit']}, "
            f"on {info['nproc']} cores ({info['cpu'] or 'cpu unknown'}), {info['mem_total_gib']} GiB, "
            f"Python {info['python']}. Source: `bench/results/{source.name}`.",
            *(
                [
                    "",
                    f"A `make bench-matrix` run: the stack and pattern figures are from the newest full run, "
                    f"`bench/results/{data['measures_from']['file']}` ({data['measures_from']['date_utc']}, "
                    f"commit {data['measures_from']['commit']}).",
                ]
                if data.get("measures_from")
                else []
            ),
            "",
            "## Decision matrix",
            "",
            *matrix_table(data),
            "",
            f"## The same work in each tool: a {w['tasks']}-task chain and a {w['tasks']}-way fan-out plus a join",
            "",
            f"Each task is {w['rounds']:,} rounds of SHA-256 (bench/runners/workload.py). *run* is from starting "
            "the flow/DAG/pipeline to its result; *overhead per task* is (run - plain Python's run) / tasks; "
            "*import* is importing the tool and defining the work; *whole process* includes the interpreter start.",
            "",
            *side_table(data),
            "",
            *strengths_section(data),
            "## Setup cost",
            "",
            *setup_table(data, compose),
            "",
            "## Each pattern's warm run, split by the orchestrators' own records",
            "",
            "*orchestration* is the outer orchestrator's run minus the *work* inside it; *start-up and exit* is "
            "the rest of the command's wall clock (uv, make, the stack check, imports, the summary).",
            "",
            *pattern_table(data),
            "",
        ]
    )


def plot(data: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {(r["runner"], r["shape"]): r for r in data["side_by_side"]["rows"]}
    m = measures(data)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.3]})
    tools = present(rows)
    x = range(len(tools))
    for offset, shape, label in ((-0.2, "chain", "10-task chain"), (0.2, "fanout", "10-way fan-out + join")):
        values = [max(rows[(t, shape)]["per_task_overhead_s"] * 1000, 1.0) for t in tools]
        bars = left.bar([i + offset for i in x], values, width=0.4, label=label)
        left.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize="x-small")
    left.set_xticks(list(x), [SHORT[t] for t in tools], fontsize="small", rotation=20, ha="right")
    left.set_yscale("log")
    left.set_ylabel("overhead per task, ms (median, log scale)")
    left.set_title("Orchestration overhead per task, same work")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
    names, parts = [], {"cd_stages_s": [], "startup_exit_s": [], "orchestration_s": [], "work_s": []}
    for key, title in PATTERN_KEYS.items():
        splits = m.get(key, {}).get("split") or []
        if not splits:
            continue
        names.append(title.split(" (")[0])
        for part in parts:
            parts[part].append(statistics.median(s.get(part, 0.0) for s in splits))
    bottom = [0.0] * len(names)
    labels = {
        "cd_stages_s": "CD stages (lint, test, build, deploy)",
        "startup_exit_s": "start-up and exit",
        "orchestration_s": "orchestration",
        "work_s": "work",
    }
    for part, values in parts.items():
        if any(values):
            right.barh(names, values, left=bottom, label=labels[part])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    borrowed = data.get("measures_from")
    right.set_title("Each pattern's warm run" + (f" ({borrowed['date_utc'][:16]} UTC run)" if borrowed else ""))
    if names:
        right.invert_yaxis()
        right.set_xlabel("seconds (median warm run)")
        right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
    else:
        right.text(0.5, 0.5, "no pattern run was split", ha="center", va="center", transform=right.transAxes)
    info = data["machine"]
    kind = "make bench-matrix" if data.get("only") == "matrix" else "make bench"
    fig.suptitle(f"{kind}, {info['date_utc'][:16]} UTC, {info['nproc']} cores, commit {info['commit']}")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    data, compose, source = load(Path(argv[0]) if argv else None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    markdown = render(data, compose, source)
    (RESULTS / "decision-matrix.md").write_text(markdown)
    plot(data, RESULTS / "decision-matrix.png")
    print(markdown)
    print(f"written: {RESULTS / 'decision-matrix.md'} and {RESULTS / 'decision-matrix.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
