"""The GitHub workflows cannot drift from the Makefile, and follow the security
rules: every `run:` step is a make target that exists, every action is pinned
to a commit SHA, and permissions are least-privilege. (zizmor and the
workflow JSON schema run in `make lint`.)"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_meta import make_targets

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*=\S*$")


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True.
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "p4-cd.yml", "e2e-kind.yml", "e2e-compose.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_calls_an_existing_make_target(path: Path) -> None:
    targets = make_targets()
    runs = [(job, step) for job, step in steps(load(path)) if "run" in step]
    assert runs, f"{path.name} has no run steps"
    for job, step in runs:
        lines = [line for line in step["run"].strip().splitlines() if line.strip()]
        assert len(lines) == 1, f"{path.name} job {job}: `{step['run']}` is a script, not one make target"
        words = shlex.split(lines[0])
        assert words[0] == "make", f"{path.name} job {job}: `{lines[0]}` does not call make"
        called = [w for w in words[1:] if not w.startswith("-") and not VARIABLE.match(w)]
        assert called, f"{path.name} job {job}: `{lines[0]}` names no target"
        for target in called:
            assert target in targets, f"{path.name} job {job}: `make {target}` does not exist"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha(path: Path) -> None:
    text = path.read_text()
    for job, step in steps(load(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith(("./", "docker://")):
            continue
        assert PINNED.match(uses), f"{path.name} job {job}: `{uses}` is not pinned to a full commit SHA"
        # ... with the version it stands for, for the humans who update it.
        assert re.search(re.escape(uses) + r" # v\d", text), f"{path.name}: `{uses}` lacks its `# vX.Y.Z` comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path: Path) -> None:
    workflow = load(path)
    assert "permissions" in workflow, f"{path.name} sets no top-level permissions (the default is broad)"
    for job_id, job in workflow["jobs"].items():
        granted = {**(workflow["permissions"] or {}), **(job.get("permissions") or {})}
        writes = {scope for scope, level in granted.items() if level == "write"}
        allowed = {("p4-cd.yml", "deploy"): {"packages"}, ("p4-cd.yml", "report"): {"pull-requests"}}.get(
            (path.name, job_id), set()
        )
        assert writes <= allowed, f"{path.name} job {job_id} can write {writes - allowed}"
    for _, step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


def test_p4_cd_deploys_on_main_and_only_dry_runs_pull_requests() -> None:
    cd = load(REPO / ".github" / "workflows" / "p4-cd.yml")
    assert cd["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in cd["on"] and "pull_request" in cd["on"]
    jobs = cd["jobs"]

    def called(job: str) -> list[str]:
        return [step["run"].split()[1] for step in jobs[job]["steps"] if "run" in step]

    assert called("test") == ["p4-lint", "p4-test"]
    assert jobs["dry-run"]["if"] == "github.event_name == 'pull_request'"
    assert called("dry-run") == ["p4-build", "p4-validate"]
    # the CML report: trained on the branch, posted only from this repository's branches
    assert jobs["report"]["if"] == "github.event_name == 'pull_request'" and jobs["report"]["needs"] == "test"
    assert called("report") == ["p4-report", "p4-pr-comment"]
    [comment] = [step for step in jobs["report"]["steps"] if step.get("run") == "make p4-pr-comment"]
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert comment["env"] == {"REPO_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    assert jobs["dry-run"]["env"]["P4_PUSH"] == "false"
    # A manual run from another branch deploys nothing (not only the environment's rules).
    assert jobs["deploy"]["if"] == "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
    assert called("deploy") == ["p4-build", "p4-deploy", "p4-run"]
    assert jobs["dry-run"]["needs"] == jobs["deploy"]["needs"] == "test"
    # Secrets reach only the steps that use them, never a whole job or the workflow.
    for job in jobs.values():
        assert "secrets." not in str(job.get("env", {}))
    assert "secrets." not in str(cd.get("env", {}))
    assert cd["concurrency"]["cancel-in-progress"] is False


def test_e2e_compose_runs_the_normal_stack_dumps_logs_on_failure_and_always_tears_down() -> None:
    workflow = load(REPO / ".github" / "workflows" / "e2e-compose.yml")
    [job] = workflow["jobs"].values()
    # The normal docker-compose.yml (registries answer on GitHub), not the air-gapped override.
    assert job["env"]["STACK_COMPOSE_AIRGAP"] == "false"
    runs = [(step.get("if", ""), step["run"]) for step in job["steps"] if "run" in step]
    assert runs[0] == ("", "make test-compose")
    assert ("failure()", "make logs STACK=compose LINES=200") in runs
    assert runs[-1] == ("always()", "make compose-reset STACK=compose")
    # The steps after the tests reach the tests' compose project and state.
    assert job["env"]["COMPOSE_PROJECT_NAME"] == "hybrid-ml-patterns-test"
    assert job["env"]["COMPOSE_STATE_DIR"].endswith("/.state/compose-test")


def test_actionlint_in_make_lint_catches_what_the_schema_cannot(tmp_path: Path) -> None:
    """`make lint` runs actionlint: an undefined job in `needs`, an unknown context
    and a shellcheck finding in a `run:` step pass the JSON schema but not it."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: nowhere\n"
        "    steps:\n      - run: echo ${{ github.evnt.name }} $UNQUOTED_VAR\n"
    )
    found = subprocess.run(
        ["actionlint", "-no-color", "-pyflakes=", "-oneline", str(bad)], capture_output=True, text=True, check=False
    )
    assert found.returncode == 1, found.stdout + found.stderr
    assert 'job "a" needs job "nowhere" which does not exist' in found.stdout
    assert 'property "evnt" is not defined' in found.stdout
    assert "SC2086" in found.stdout  # shellcheck: double quote to prevent globbing
    assert "actionlint -no-color -pyflakes= .github/workflows/*.yml" in (REPO / "Makefile").read_text()


def verified_actions() -> dict[str, tuple[str, str, str]]:
    """.github/README.md's "Verified against" table: action -> (tag, commit, runs.using)."""
    text = (REPO / ".github" / "README.md").read_text()
    rows = text[text.index("## Verified against") :].splitlines()
    found = {}
    for row in rows:
        cells = [c.strip().strip("`") for c in row.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[0-9a-f]{40}", cells[2]):
            found[cells[0]] = (cells[1], cells[2], cells[3])
    return found


def test_every_action_is_the_verified_release_on_a_current_runtime() -> None:
    """Each `uses:` is in .github/README.md's table with the SHA and tag read
    upstream; node24 unless the table records why not (setup-cml has no release
    past node16)."""
    table = verified_actions()
    assert table, "no rows in .github/README.md's Verified against table"
    used = set()
    for path in WORKFLOWS:
        for job, step in steps(load(path)):
            if "uses" not in step:
                continue
            action, sha = step["uses"].split("@")
            assert action in table, f"{path.name} job {job}: {action} is not in .github/README.md's table"
            tag, commit, runtime = table[action]
            assert sha == commit, f"{path.name} job {job}: {action}@{sha} is not the verified {commit} ({tag})"
            assert f"{step['uses']} # {tag}" in path.read_text()
            assert runtime == "node24" or action == "iterative/setup-cml", f"{action} {tag} runs on {runtime}"
            used.add(action)
    assert used == set(table), f"the table lists actions no workflow uses: {set(table) - used}"
