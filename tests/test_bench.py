"""The measured decision matrix's machinery (bench/matrix.py, bench/runners/, bench/report.py):
every runner does the work it reports, a pattern run splits into parts that add up,
and the report renders. Correctness only: speed lives in `make bench`, never here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, Stack

sys.path.insert(0, str(REPO / "bench"))
import matrix  # noqa: E402
import report  # noqa: E402

ROUNDS = 50  # a tiny workload: each task a few microseconds of SHA-256


def test_each_bench_environment_is_locked_installed_and_measured() -> None:
    """Dagster and Flyte have environments of their own (bench/envs/): each locked,
    installed by `make setup` and `make test`, and in the setup-cost table."""
    envs = sorted(p for p in (REPO / "bench" / "envs").iterdir() if p.is_dir())
    assert [p.name for p in envs] == ["dagster", "flyte"]
    makefile = (REPO / "Makefile").read_text()
    [setup] = re.findall(r"^setup: .*\n((?:\t.*\n)+)", makefile, re.M)
    assert re.search(r"^test: setup\b", makefile, re.M), "make test no longer installs what make setup does"
    for env in envs:
        name = tomllib.loads((env / "pyproject.toml").read_text())["project"]["name"]
        assert name in {p["name"] for p in tomllib.loads((env / "uv.lock").read_text())["package"]}
        assert f"\t$(UV) sync --locked --project $(BENCH_ENVS)/{env.name}\n" in setup, env.name  # and so in test
        assert env in matrix.ENVIRONMENTS.values()
        assert matrix.runner_named(env.name).project == env


def test_union_counts_parallel_time_once() -> None:
    assert matrix._union([]) == 0
    assert matrix._union([(0, 2), (1, 3), (5, 6)]) == 4  # [0, 3] and [5, 6]
    assert matrix._union([(0, 10), (2, 3)]) == 10  # nested
    parts = matrix.split(20.0, [(100, 110)], [(101, 104), (103, 106)])
    assert parts["work_s"] == 5 and parts["orchestration_s"] == 5 and parts["startup_exit_s"] == 10


def test_the_workload_depends_on_every_task() -> None:
    """A runner that skips a task, reorders the chain or drops a leaf gets another answer."""
    w = matrix.workload
    chain, fanout = w.expected("chain", ROUNDS), w.expected("fanout", ROUNDS)
    assert chain != fanout
    assert w.expected("chain", ROUNDS + 1) != chain
    skipped = w.SEED
    for i in range(1, w.N):  # one task short
        skipped = w.step(skipped, i, ROUNDS)
    assert skipped != chain
    leaves = [w.step(w.SEED, i, ROUNDS) for i in range(1, w.N + 1)]
    assert w.join(leaves) == fanout
    assert w.join(list(reversed(leaves))) != fanout
    assert w.task_count("chain") == w.N and w.task_count("fanout") == w.N + 1


@pytest.fixture(scope="module")
def side_by_side(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = stack.env | {"BENCH_ROUNDS": str(ROUNDS)}
    return matrix.side_by_side(env, tmp_path_factory.mktemp("side-by-side"), repeat=1, timeout=600, log=print)


@pytest.fixture(scope="module")
def strengths(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Dagster's and Flyte's demos, once, on the tiny workload (no stack needed)."""
    base = {"PATH": "/usr/bin:/bin", "S3_ENDPOINT_URL": "", "BENCH_ROUNDS": str(ROUNDS)}
    return matrix.strengths(base, tmp_path_factory.mktemp("strengths"), repeat=1, timeout=600, log=print)


def test_dagster_rejects_a_bad_value_before_the_downstream_step(strengths: dict) -> None:
    cases = {c["case"]: c for c in strengths["dagster_contract"]}
    assert set(cases) == set(matrix.DAGSTER_CASES)
    good = cases["good"]
    assert good["success"] and good["fit_ran"] and good["steps_succeeded"] == ["fit", "readings"], good
    for bad in ("wrong_type", "out_of_contract"):
        case = cases[bad]
        assert not case["success"] and case["failed_step"] == "readings", case
        assert case["steps_started"] == ["readings"] and not case["fit_ran"], case  # fit never started
        assert case["error"].startswith("DagsterTypeCheckDidNotPass"), case
    assert "reading(s) not a finite float in [0, 1000]" in cases["out_of_contract"]["error"]
    # The control: the same bad value from an untyped asset reaches `fit`, which then fails.
    control = cases["untyped"]
    assert control["fit_ran"] and control["failed_step"] == "fit" and not control["success"], control
    assert all(c["claim_holds"] for c in cases.values())


def test_flyte_fans_out_as_many_tasks_as_the_data_decides(strengths: dict) -> None:
    runs = {r["rows"]: r for r in strengths["flyte_dynamic"]}
    assert set(runs) == set(matrix.FLYTE_ROWS)
    for rows, run in runs.items():
        chunks = -(-rows // 1000)
        assert run["chunks_decided_at_run_time"] == chunks and run["step_tasks_run"] == chunks, run
        assert run["result_is_plain_pythons"] and run["claim_holds"], run
    # A static workflow cannot loop over a value it only gets at run time.
    assert not strengths["flyte_static_workflow"].startswith("no error"), strengths["flyte_static_workflow"]


def test_the_demos_refuse_bad_arguments() -> None:
    for name, script, args in (
        ("dagster", "dagster_contract.py", ["no-such-case"]),
        ("flyte", "flyte_dynamic.py", ["0"]),
        ("flyte", "flyte_dynamic.py", []),
    ):
        with pytest.raises(matrix.MatrixError, match="failed with exit code") as info:
            matrix._json_lines(matrix.runner_named(name), script, args, {"PATH": "/usr/bin:/bin"}, 120)
        assert "usage: python" in info.value.output, info.value.output


@pytest.mark.stack
def test_every_runner_returns_plain_pythons_answer(side_by_side: dict) -> None:
    rows = {(r["runner"], r["shape"]): r for r in side_by_side["rows"]}
    assert set(rows) == {(r.name, s) for r in matrix.RUNNERS for s in ("chain", "fanout")}
    for (runner, shape), row in rows.items():
        (sample,) = row["samples"]
        assert sample["result"] == matrix.workload.expected(shape, ROUNDS), (runner, shape)
        assert sample["rounds"] == ROUNDS and sample["tasks"] == matrix.workload.task_count(shape)
        assert 0 <= sample["run_s"] < sample["wall_s"], (runner, shape, sample)
    assert side_by_side["workload"]["rounds"] == ROUNDS
    assert side_by_side["airflow_db_migrate_s"][0] > 0


def test_a_wrong_answer_or_workload_is_refused(tmp_path: Path) -> None:
    """The check the benchmark relies on: a runner that ran another workload, or
    returned another answer, fails the run instead of being timed."""
    runner = matrix.RUNNERS[0]  # plain Python: no stack needed
    env = matrix.runner_env({"PATH": "/usr/bin:/bin", "S3_ENDPOINT_URL": ""}, runner, tmp_path)
    ok = subprocess.run(
        [str(runner.python), str(runner.script), "chain"],
        env=env | {"BENCH_ROUNDS": str(ROUNDS)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert matrix.check_report(runner, "chain", ok, ROUNDS)["result"] == matrix.workload.expected("chain", ROUNDS)
    with pytest.raises(matrix.MatrixError, match=f"ran {ROUNDS} rounds, not {ROUNDS + 1}"):
        matrix.check_report(runner, "chain", ok, ROUNDS + 1)
    wrong = json.loads(ok) | {"result": matrix.workload.expected("fanout", ROUNDS)}
    with pytest.raises(matrix.MatrixError, match="did not do the work"):
        matrix.check_report(runner, "chain", json.dumps(wrong), ROUNDS)
    with pytest.raises(matrix.MatrixError, match="printed no JSON report"):
        matrix.check_report(runner, "chain", "Traceback ...", ROUNDS)


@pytest.mark.stack
def test_a_pattern_run_splits_into_parts_that_add_up(stack: Stack, p1_first_run: dict) -> None:
    """The session's first run of pattern 1, as pattern 2's test splits its first run."""
    wall = float(p1_first_run["_wall"])
    parts = matrix.split_p1(stack.env, p1_first_run, wall)
    total = parts["startup_exit_s"] + parts["orchestration_s"] + parts["work_s"]
    assert total == pytest.approx(wall, abs=0.01)
    assert parts["work_s"] > 0 and parts["orchestration_s"] > 0 and parts["startup_exit_s"] > 0, parts
    assert parts["work_units"] == sorted(matrix.P1_WORK)


@pytest.mark.stack
def test_report_renders_markdown_and_png(side_by_side: dict, strengths: dict, tmp_path: Path) -> None:
    data = {
        "repeat": 1,
        "machine": {"date_utc": "now", "commit": "test", "nproc": 2, "cpu": "", "mem_total_gib": 1, "python": "3"},
        "measures": [],
        "side_by_side": side_by_side,
        "strengths": strengths,
    }
    markdown = report.render(data, None, tmp_path / "result.json")
    for runner in matrix.RUNNERS:
        assert runner.title in markdown
    assert "## Dagster's and Flyte's claims, run locally" in markdown
    assert "| a CSV string where the list is declared | failed | readings | no | DagsterTypeCheckDidNotPass" in markdown
    assert "| 50,000 | 50 | 50 | yes |" in markdown
    plain = next(r for r in side_by_side["rows"] if r["runner"] == "prefect" and r["shape"] == "chain")
    assert f"| {plain['run_s']:.2f} |" in markdown
    target = tmp_path / "matrix.png"
    report.plot(data, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000
