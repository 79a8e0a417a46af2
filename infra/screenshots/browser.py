"""A headless Chromium signed in to the stack's UIs, for `make screenshots` and the
browser tests (marker `browser`).

The browser is the system's (Debian's `chromium`, or CHROMIUM=path), driven by
Playwright: the browser builds Playwright downloads are not reachable from every
machine, and the system's is the one a user has. Each UI is opened the way a
person signs in:

  Prefect  the UI's login page stores the auth string in localStorage (`prefect-password`,
           base64); set before the first page loads
  MLflow   HTTP basic auth (the browser's own prompt)
  Airflow  the simple auth manager's JWT, from POST /auth/token, in the `_token` cookie

`Browser.open(page)` waits until the page shows the record it should (its text),
fails when it does not within a bound (a spinner, an error page), and collects the
console errors and uncaught exceptions of the page.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import TimeoutError as PlaywrightTimeout

VIEWPORT = {"width": 1280, "height": 800}
# After a page showed its record: how long to wait for its requests to go quiet. The
# UIs poll their APIs, so quiet may never come; the bound is what a picture waits
# (charts drawn late), and the tests take a shorter one (they read the console).
SETTLE_S = 10.0

# Console messages these UIs print that are not a fault of the page shown: a favicon the
# server does not have, and Prefect's flow-run page asking for its state's favicon before
# the state has loaded (GET /ico/undefined.svg, 404; Prefect 3.8.8's UI).
IGNORED_CONSOLE = ("/favicon.ico", "/ico/undefined.svg")


class BrowserError(Exception):
    """A problem a user can fix; printed as `error:` and `fix:`."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def chromium_path() -> str:
    """The system browser: CHROMIUM, else `chromium`, `chromium-browser` or `google-chrome` on PATH
    (the order chromium.sh looks in, which `make` runs first and which installs Debian's)."""
    given = os.environ.get("CHROMIUM")
    found = given or next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not found or not Path(found).exists():
        raise BrowserError(
            f"no Chromium found ({'CHROMIUM=' + given if given else 'chromium is not on PATH'})",
            "install Debian's browser (`sudo apt-get install chromium`; `make screenshots` and "
            "`make test-all` do it when they run as root), or set CHROMIUM to a Chromium or Chrome binary",
        )
    return found


@dataclass
class Logins:
    """Where the UIs are and how to sign in: the stack's client variables."""

    prefect_api: str
    prefect_auth: str
    mlflow: str
    mlflow_user: str
    mlflow_password: str
    airflow: str = ""
    airflow_user: str = "admin"
    airflow_password: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Logins:
        missing = [n for n in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI") if not env.get(n)]
        if missing:
            raise BrowserError(
                f"{', '.join(missing)} not set: no stack to open",
                "run it through make (`make screenshots`), which exports the stack's URLs and logins",
            )
        return cls(
            prefect_api=env["PREFECT_API_URL"].rstrip("/"),
            prefect_auth=env.get("PREFECT_API_AUTH_STRING", ""),
            mlflow=env["MLFLOW_TRACKING_URI"].rstrip("/"),
            mlflow_user=env.get("MLFLOW_TRACKING_USERNAME", ""),
            mlflow_password=env.get("MLFLOW_TRACKING_PASSWORD", ""),
            airflow=env.get("P2_AIRFLOW_API_URL", "").rstrip("/"),
            airflow_user=env.get("P2_AIRFLOW_USERNAME") or "admin",
            airflow_password=env.get("P2_AIRFLOW_PASSWORD", ""),
        )

    @property
    def prefect_ui(self) -> str:
        return self.prefect_api.removesuffix("/api")

    def base(self, ui: str) -> str:
        return {"prefect": self.prefect_ui, "mlflow": self.mlflow, "airflow": self.airflow}[ui]

    def airflow_token(self) -> str:
        try:
            response = httpx.post(
                f"{self.airflow}/auth/token",
                json={"username": self.airflow_user, "password": self.airflow_password},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            raise BrowserError(
                f"the Airflow API at {self.airflow} does not answer ({exc})",
                "start pattern 2's Airflow (`make pattern-2` leaves it running) or set P2_AIRFLOW_API_URL",
            ) from exc
        if response.status_code not in (200, 201):
            raise BrowserError(
                f"Airflow refused user {self.airflow_user!r} ({response.status_code})",
                "set P2_AIRFLOW_USERNAME and P2_AIRFLOW_PASSWORD (make exports the stack's)",
            )
        return response.json()["access_token"]


@dataclass
class Loaded:
    """A page once it showed its record: what the console said meanwhile."""

    url: str
    console_errors: list[str] = field(default_factory=list)


class Browser:
    """One Chromium, one signed-in context per UI (opened on first use)."""

    def __init__(self, playwright, logins: Logins, timeout_s: float = 60, settle_s: float = SETTLE_S):
        self.logins, self.timeout_ms, self.settle_ms = logins, timeout_s * 1000, settle_s * 1000
        self._browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            # --no-sandbox: root (CI here) cannot use Chromium's sandbox
            args=["--no-sandbox", "--force-color-profile=srgb", "--hide-scrollbars"],
        )
        self._contexts: dict[str, object] = {}

    def close(self) -> None:
        self._browser.close()

    def _context(self, ui: str):
        if ui in self._contexts:
            return self._contexts[ui]
        options = {"viewport": VIEWPORT, "color_scheme": "light", "device_scale_factor": 1, "locale": "en-US"}
        if ui == "mlflow" and self.logins.mlflow_user:
            options["http_credentials"] = {
                "username": self.logins.mlflow_user,
                "password": self.logins.mlflow_password,
            }
        context = self._browser.new_context(**options)
        if ui == "prefect":
            # The UI's theme is its own setting (localStorage `color-scheme`, JSON; dark unless set).
            context.add_init_script("""window.localStorage.setItem('color-scheme', '"light"');""")
        if ui == "prefect" and self.logins.prefect_auth:
            encoded = base64.b64encode(self.logins.prefect_auth.encode()).decode()
            context.add_init_script(f"window.localStorage.setItem('prefect-password', {encoded!r});")
        if ui == "airflow":
            if not self.logins.airflow:
                raise BrowserError("P2_AIRFLOW_API_URL not set: no Airflow to open", "run it through make")
            context.add_cookies([{"name": "_token", "value": self.logins.airflow_token(), "url": self.logins.airflow}])
        self._contexts[ui] = context
        return context

    @contextmanager
    def open(self, ui: str, path: str, expect: list[str], failure_png: Path | None = None) -> Iterator[tuple]:
        """Open BASE+path in UI's context; wait until every text in `expect` is on the page.
        Yields (page, Loaded). On a timeout the page is saved to `failure_png` and an
        AssertionError names the text that never showed."""
        page = self._context(ui).new_page()
        url = self.logins.base(ui) + path
        loaded = Loaded(url)

        def console(msg) -> None:
            source = str(msg.location.get("url", ""))
            if msg.type == "error" and not any(i in msg.text + source for i in IGNORED_CONSOLE):
                loaded.console_errors.append(f"{msg.text} ({source})" if source else msg.text)

        page.on("console", console)
        page.on("pageerror", lambda exc: loaded.console_errors.append(f"uncaught: {exc}"))
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=self.timeout_ms)
            for text in expect:
                try:
                    # Any visible element with the text: the first in the page may be hidden
                    # (Prefect's deployment page has a hidden SPAN.p-tag with the release
                    # before the tags it shows; waiting on that one timed out in G12).
                    shown = page.get_by_text(text, exact=False).filter(visible=True).first
                    shown.wait_for(state="visible", timeout=self.timeout_ms)
                except PlaywrightTimeout:
                    saved = ""
                    if failure_png is not None:
                        failure_png.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(failure_png))
                        saved = f"; the page as it was: {failure_png}"
                    bound = f"{self.timeout_ms / 1000:.0f} s"
                    raise AssertionError(f"{url} did not show {text!r} within {bound}{saved}") from None
            # Settle: the UIs poll their APIs, so "no request for 500 ms" may never come; bounded.
            with suppress(PlaywrightTimeout):
                page.wait_for_load_state("networkidle", timeout=self.settle_ms)
            page.wait_for_timeout(500)  # transitions and charts drawn after the data arrived
            yield page, loaded
        finally:
            page.close()
