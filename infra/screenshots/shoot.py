"""Pictures of the UIs for the READMEs, from the running stack (`make screenshots`).

    python infra/screenshots/shoot.py [--pattern p1_prefect_mlflow ...]

Opens every page of pages.PAGES (or those of the patterns named) in headless
Chromium, signed in with the stack's logins (the environment make exports), waits
until each shows its pattern's latest record, and saves it as
patterns/<pattern>/docs/img/<name>.png: 1280x800, light theme, reduced to a
256-colour palette so that each stays well under MAX_BYTES. The pictures are
written only when every page of the run loaded: a failure leaves the old ones.
Run the patterns first (`make patterns`): the pages show their latest runs.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from browser import Browser, BrowserError, Logins
from pages import PATTERNS, Services, pages_of, records

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 300_000


def compress(png: bytes) -> bytes:
    """The screenshot as a 256-colour PNG (UI pictures: flat colours, text)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()


def shoot(patterns: list[str], env: dict[str, str]) -> list[tuple[Path, int]]:
    from playwright.sync_api import sync_playwright

    logins = Logins.from_env(env)
    services = Services(logins)
    staged = Path(tempfile.mkdtemp(prefix="screenshots-"))
    written: list[tuple[Path, int]] = []
    try:
        with sync_playwright() as playwright:
            browser = Browser(playwright, logins)
            try:
                for pattern in patterns:
                    fields = records(pattern, services)
                    for page in pages_of(pattern):
                        failure = REPO / ".state" / "screenshots-failed" / f"{page.name}.png"
                        with browser.open(page.ui, page.url_path(fields), page.texts(fields), failure) as (tab, _):
                            png = compress(tab.screenshot())
                        if len(png) > MAX_BYTES:
                            raise BrowserError(
                                f"{page.image} would be {len(png)} bytes (more than {MAX_BYTES})",
                                "show less on the page (pages.py) or lower the palette in compress()",
                            )
                        (staged / page.name).write_bytes(png)
                        url = logins.base(page.ui) + page.url_path(fields)
                        print(f"  {page.image:60} {len(png) // 1000:4d} KB  {url}")
            finally:
                browser.close()
        for pattern in patterns:
            for page in pages_of(pattern):
                target = REPO / page.image
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged / page.name, target)
                written.append((target, target.stat().st_size))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pattern", action="append", choices=PATTERNS, help="only this pattern's pages (repeatable)")
    args = parser.parse_args(argv)
    patterns = args.pattern or list(PATTERNS)
    try:
        written = shoot(patterns, dict(os.environ))
    except BrowserError as exc:
        print(f"error: {exc.problem}\nfix: {exc.fix}", file=sys.stderr)
        print("Result: step=screenshots status=failed", file=sys.stderr)
        return 1
    except AssertionError as exc:  # a page that never showed its record
        print(f"error: {exc}\nfix: check that the pattern's last run succeeded (`make patterns`)", file=sys.stderr)
        print("Result: step=screenshots status=failed", file=sys.stderr)
        return 1
    largest = max(size for _, size in written)
    print(f"Result: step=screenshots status=ok pictures={len(written)} largest_kb={largest // 1000}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
