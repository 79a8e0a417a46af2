"""The repository keeps its promises to a newcomer: every pattern folder is a
complete, copyable unit with a make target, a smoke test and fast tests of its
own, its README reads in two minutes with the run commands first, and every
command and path the READMEs and docs pages name exists."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import PATTERNS, REPO

PATTERN_DIRS = sorted(p for p in PATTERNS.iterdir() if p.is_dir() and re.match(r"p\d+_", p.name))
# Every README and docs page of the repository's own (not those inside environments or state folders).
READMES = sorted(
    p
    for p in [*REPO.rglob("README.md"), *REPO.rglob("docs/*.md")]
    if not any(part.startswith(".") for part in p.relative_to(REPO).parts)
)
GUIDE = "Choosing Your Orchestrator: A Startup's Guide to Airflow vs. Kubeflow Pipelines vs. Prefect"
# A pattern README, in this order; operational detail (reliability, scale-out) on docs/operations.md.
README_ORDER = ("What it shows", "Run", "Expected output", "Architecture", "Source of truth", "Copy into your project")
README_MAX_LINES = 125
PICTURES_MAX_LINES = 9


def make_targets() -> set[str]:
    listing = subprocess.run(
        ["make", "-pRrq", "-f", str(REPO / "Makefile"), ":"], capture_output=True, text=True, cwd=REPO
    ).stdout
    return set(re.findall(r"^([a-zA-Z0-9][a-zA-Z0-9_.-]*):", listing, re.MULTILINE))


def _ignored_by_git(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path.rstrip("/")], cwd=REPO).returncode == 0


def test_patterns_exist() -> None:
    assert PATTERN_DIRS, "no pattern folder found under patterns/"


@pytest.mark.parametrize("pattern", PATTERN_DIRS, ids=lambda p: p.name)
def test_pattern_folder_is_complete(pattern: Path) -> None:
    for name in ("README.md", "pyproject.toml", "uv.lock", ".env.example", "settings.py"):
        assert (pattern / name).is_file(), f"{pattern.name} lacks {name}"
    number = re.match(r"p(\d+)_", pattern.name).group(1)
    assert f"pattern-{number}" in make_targets(), f"no `make pattern-{number}`"
    smoke = list((REPO / "tests" / pattern.name).glob("test_*.py"))
    assert smoke, f"no tests under tests/{pattern.name}/"
    fast = list((pattern / "tests").glob("test_*.py"))
    assert fast, f"no fast tests under patterns/{pattern.name}/tests/ (they travel with a copied folder)"
    readme = (pattern / "README.md").read_text()
    assert "```mermaid" in readme
    assert "Result: pattern=" in readme, "the README's expected output shows the Result line"


@pytest.mark.parametrize("pattern", PATTERN_DIRS, ids=lambda p: p.name)
def test_pattern_readme_reads_in_two_minutes(pattern: Path) -> None:
    """Run first, the idea before the plumbing, the rest on docs/operations.md."""
    readme = (pattern / "README.md").read_text()
    lines = readme.splitlines()
    # The pictures (a table of screenshots, tests/test_screenshots.py) are looked at, not read:
    # their section has a bound of its own, and the text around them keeps README_MAX_LINES.
    pictures = re.search(r"^## What you will see\n.*?(?=^## )", readme, re.MULTILINE | re.DOTALL)
    shown = pictures.group(0).splitlines() if pictures else []
    assert len(shown) <= PICTURES_MAX_LINES, f"{pattern.name}/README.md: 'What you will see' has {len(shown)} lines"
    text_lines = len(lines) - len(shown)
    assert text_lines <= README_MAX_LINES, f"{pattern.name}/README.md has {text_lines} lines besides the pictures"
    headings = [line[3:].strip() for line in lines if line.startswith("## ")]
    found = []
    for name in README_ORDER:
        at = [i for i, heading in enumerate(headings) if heading.startswith(name)]
        assert at, f"{pattern.name}/README.md lacks '## {name}'"
        found.append(at[0])
    assert found == sorted(found), f"{pattern.name}/README.md: sections out of order: {headings}"
    run_at = next(i for i, line in enumerate(lines, 1) if line.startswith("## Run"))
    assert run_at <= 30, f"{pattern.name}/README.md: `## Run` at line {run_at}"
    assert GUIDE in " ".join(readme.split()) and "Hybrid Patterns" in readme, "name the guide and its section"
    operations = pattern / "docs" / "operations.md"
    assert operations.is_file() and "docs/operations.md" in readme, "link the operations page"
    assert re.search(r"^##+ Scale out", operations.read_text(), re.MULTILINE)


def test_root_readme_reads_in_two_minutes() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    assert "make patterns" in readme and "make test-all" in readme
    assert "bench/decision-matrix.png" in readme and "bench/README.md" in readme


@pytest.mark.parametrize("pattern", PATTERN_DIRS, ids=lambda p: p.name)
def test_env_example_documents_every_setting(pattern: Path) -> None:
    """Every field of the settings object appears in .env.example."""
    source = (pattern / "settings.py").read_text()
    fields = re.findall(r"^    ([a-z_0-9]+): [^=]+= Field\(", source, re.MULTILINE)
    assert fields
    example = (pattern / ".env.example").read_text()
    number = re.match(r"p(\d+)_", pattern.name).group(1)
    prefix = f"P{number}_"
    for field in fields:
        assert f"{prefix}{field.upper()}" in example, f"{prefix}{field.upper()} is not in .env.example"


@pytest.mark.parametrize("pattern", PATTERN_DIRS, ids=lambda p: p.name)
def test_lock_matches_pyproject(pattern: Path) -> None:
    """Each environment resolves on its own: its lock names its own project."""
    lock = tomllib.loads((pattern / "uv.lock").read_text())
    name = tomllib.loads((pattern / "pyproject.toml").read_text())["project"]["name"]
    assert name in {p["name"] for p in lock["package"]}


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_commands_and_paths_exist(readme: Path) -> None:
    assert readme.is_file(), f"{readme.relative_to(REPO)} is missing"
    text = readme.read_text()
    # A "Verified against" section names upstream repositories' files, not this one's.
    text = re.sub(r"^## Verified against\n.*?(?=^## |\Z)", "", text, flags=re.MULTILINE | re.DOTALL)
    targets = make_targets()
    for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)", text):
        assert target in targets, f"{readme.relative_to(REPO)} names `make {target}`, which does not exist"
    # Every relative path in backticks or links that looks like a file or folder of this repo.
    candidates = re.findall(
        r"`([A-Za-z0-9_.\-/]+/[A-Za-z0-9_.\-/]*|[A-Za-z0-9_\-]+\.(?:py|toml|yaml|yml|md|lock|"
        r"example|dvc))`",
        text,
    )
    candidates += re.findall(r"\]\((?!https?:|#|mailto:)([^)#\s]+)", text)
    for candidate in candidates:
        if "://" in candidate or candidate.startswith(("s3:", "models:", "runs:")) or "<" in candidate:
            continue
        if candidate.startswith(("/", "~", "../")):
            continue
        if any(ch in candidate for ch in "*{}$") or candidate.endswith("/.venv") or candidate == ".env":
            continue
        if _ignored_by_git(candidate):
            continue  # a runtime product (state, environments), created by the commands
        here = (readme.parent / candidate).exists()
        # A docs page names files of the folder it documents, too.
        beside = readme.parent.name == "docs" and (readme.parent.parent / candidate).exists()
        at_root = (REPO / candidate).exists()
        assert here or beside or at_root, f"{readme.relative_to(REPO)} names `{candidate}`, which does not exist"


def test_make_help_lists_every_public_target() -> None:
    help_text = subprocess.run(
        ["make", "--no-print-directory", "help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "UV": "true"},
    ).stdout
    makefile = (REPO / "Makefile").read_text()
    public = re.findall(r"^([a-z][a-z0-9-]*):.*##", makefile, re.MULTILINE)
    assert public
    for target in public:
        assert f"make {target}" in help_text
    phony = set(" ".join(re.findall(r"^\.PHONY: (.*)$", makefile, re.MULTILINE)).split())
    undocumented = {t for t in phony if not t.startswith("_")} - set(public)
    assert not undocumented, f"targets without a `## help` line: {undocumented}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in ci
    assert "make test" in readme and "make patterns" in readme
