"""The UI pictures (infra/screenshots) without a stack: the READMEs show every page of
the catalogue and each picture is there, small and of the fixed size; `make
screenshots` fails clearly and writes nothing without a stack; the browser wrapper,
on a page this test serves itself, waits for text, collects console errors and saves
the page it gave up on."""

from __future__ import annotations

import http.server
import io
import re
import struct
import subprocess
import threading
from pathlib import Path

import pages  # infra/screenshots (tests/conftest.py puts it on the path)
import pytest
from conftest import REPO, UV, free_port

SHOOT = REPO / "infra" / "screenshots" / "shoot.py"
README_IMAGE = re.compile(r"!\[([^\]]+)\]\((docs/img/[\w.-]+\.png)\)")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_catalogue_names_each_picture_once_and_covers_every_pattern() -> None:
    names = [(p.pattern, p.name) for p in pages.PAGES]
    assert len(names) == len(set(names))
    assert {p.pattern for p in pages.PAGES} == set(pages.PATTERNS)
    assert {p.ui for p in pages.PAGES} == {"prefect", "mlflow", "airflow"}
    for page in pages.PAGES:
        assert page.path.startswith("/") and page.expect and page.caption


@pytest.mark.parametrize("pattern", pages.PATTERNS)
def test_the_readme_shows_every_picture_under_what_you_will_see(pattern: str) -> None:
    readme = (REPO / "patterns" / pattern / "README.md").read_text()
    assert "## What you will see" in readme, f"{pattern}/README.md has no section 'What you will see'"
    section = readme.split("## What you will see", 1)[1].split("\n## ", 1)[0]
    shown = {path: alt for alt, path in README_IMAGE.findall(section)}
    expected = {f"docs/img/{p.name}.png": p.caption for p in pages.pages_of(pattern)}
    assert shown == expected, "the section's pictures and captions are pages.PAGES' (regenerate: make screenshots)"
    for path in shown:
        picture = REPO / "patterns" / pattern / path
        assert picture.is_file(), f"{picture} missing: make screenshots"
        assert picture.stat().st_size < 300_000, f"{picture} is {picture.stat().st_size} bytes"
        assert png_size(picture) == (1280, 800)


def test_the_root_readme_shows_one_picture_per_ui_near_the_top() -> None:
    readme = (REPO / "README.md").read_text()
    top = readme.split("## Quickstart", 1)[0]
    shown = re.findall(r"!\[[^\]]+\]\((patterns/[\w/.-]+\.png)\)", top)
    uis = {page.ui for page in pages.PAGES if page.image in shown}
    assert uis == {"prefect", "mlflow", "airflow"}, shown
    assert all((REPO / path).is_file() for path in shown)


def test_compress_keeps_the_size_and_shrinks_the_file() -> None:
    import shoot
    from PIL import Image

    image = Image.new("RGB", (1280, 800), "white")
    for x in range(0, 1280, 7):  # text-like detail in a few colours
        image.paste((20 + x % 200, 40, 90), (x, (x * 3) % 800, x + 3, (x * 3) % 800 + 12))
    raw = io.BytesIO()
    image.save(raw, format="PNG")
    small = shoot.compress(raw.getvalue())
    assert Image.open(io.BytesIO(small)).size == (1280, 800)
    assert len(small) <= len(raw.getvalue())


def test_make_screenshots_without_a_stack_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in REPO.glob("patterns/*/docs/img/*.png")}
    port = free_port()  # nothing listens there
    env = {
        "PATH": "/usr/bin:/bin",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [UV, "run", "--locked", "--project", str(REPO), "python", str(SHOOT), "--pattern", "p1_prefect_mlflow"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: MLflow at http://127.0.0.1:{port}" in done.stderr and "fix: start the stack" in done.stderr
    assert "Result: step=screenshots status=failed" in done.stderr
    assert {p: p.stat().st_mtime_ns for p in REPO.glob("patterns/*/docs/img/*.png")} == before

    unset = subprocess.run(
        [UV, "run", "--locked", "--project", str(REPO), "python", str(SHOOT)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unset.returncode == 1 and "error: PREFECT_API_URL, MLFLOW_TRACKING_URI not set" in unset.stderr


def test_a_missing_browser_is_named_with_the_fix() -> None:
    done = subprocess.run(
        ["bash", str(REPO / "infra" / "screenshots" / "chromium.sh")],
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": "/nonexistent/chromium"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "error: CHROMIUM=/nonexistent/chromium is not an executable file" in done.stderr and "fix:" in done.stderr


# ---- the browser wrapper, on pages served here ------------------------------------------
PAGE = """<html><body><h1>p1-breast-cancer</h1><div id="late"></div>
<script>setTimeout(() => document.getElementById('late').textContent = '@ champion', 300);</script>
%s</body></html>"""


@pytest.fixture
def site():
    bodies = {
        "/ok": PAGE % "",
        "/console-error": PAGE % "<script>console.error('boom: the API answered 500')</script>",
        "/spinner": "<html><body><div class='spinner'>Loading...</div></body></html>",
        # The text first in a hidden element, then shown (as on Prefect's deployment page).
        "/hidden-first": "<html><body><span hidden>@ champion</span><p>@ champion</p></body></html>",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write((body or "").encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.browser
def test_the_browser_waits_for_the_record_and_reports_console_errors_and_spinners(site: str, tmp_path: Path) -> None:
    from browser import Browser, Logins
    from playwright.sync_api import sync_playwright

    logins = Logins.from_env({"PREFECT_API_URL": site + "/api", "MLFLOW_TRACKING_URI": site})
    with sync_playwright() as playwright:
        browser = Browser(playwright, logins, timeout_s=3)
        try:
            with browser.open("mlflow", "/ok", ["p1-breast-cancer", "@ champion"]) as (page, loaded):
                assert page.get_by_text("@ champion").is_visible() and loaded.console_errors == []
            with browser.open("mlflow", "/hidden-first", ["@ champion"]) as (_, loaded):
                assert loaded.console_errors == []
            with browser.open("prefect", "/console-error", ["@ champion"]) as (_, loaded):
                assert loaded.console_errors == [f"boom: the API answered 500 ({site}/console-error)"]
            failure = tmp_path / "spinner.png"
            refused = pytest.raises(AssertionError, match=r"/spinner did not show '@ champion' within 3 s")
            with refused, browser.open("prefect", "/spinner", ["@ champion"], failure):
                pass
            assert png_size(failure) == (1280, 800)
        finally:
            browser.close()
