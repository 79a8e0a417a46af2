#!/usr/bin/env bash
# A headless browser for `make screenshots` and the browser tests: CHROMIUM, else
# Debian's `chromium` (or a Chrome) on PATH; when none is there, Debian's package is
# installed as root (or with sudo that asks no password). Playwright drives it
# (infra/screenshots/browser.py): the browser builds Playwright downloads are not
# reachable from every machine.
# GitHub's ubuntu runners (ci.yml's `make test`) have both: /usr/bin/chromium links a
# Chromium snapshot, /usr/bin/google-chrome is Chrome (checked upstream:
# actions/runner-images images/ubuntu/scripts/build/install-google-chrome.sh at e5ed8c8a).
set -euo pipefail

found() {
  if [ -n "${CHROMIUM:-}" ]; then if [ -x "$CHROMIUM" ]; then echo "$CHROMIUM"; fi; return 0; fi
  command -v chromium || command -v chromium-browser || command -v google-chrome || true
}

browser=$(found)
if [ -z "$browser" ] && [ -n "${CHROMIUM:-}" ]; then
  echo "error: CHROMIUM=$CHROMIUM is not an executable file" >&2
  echo "fix: point CHROMIUM at a Chromium or Chrome binary, or unset it to use (or install) Debian's chromium" >&2
  exit 1
fi
if [ -z "$browser" ]; then
  if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo); else
    echo "error: no Chromium on PATH, and installing Debian's needs root" >&2
    echo "fix: sudo apt-get install chromium (or set CHROMIUM to a Chrome binary); to run the tests without" >&2
    echo "     the browser ones: make test PYTEST_ARGS=\"-m 'not browser'\"" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "error: no Chromium on PATH and no apt-get to install Debian's" >&2
    echo "fix: install Chromium or Chrome with your system's package manager, or set CHROMIUM to its binary" >&2
    exit 1
  fi
  echo "installing Debian's chromium (the browser for the UI pictures and tests)"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
  browser=$(found)
  [ -n "$browser" ] || { echo "error: apt-get installed chromium, yet it is not on PATH" >&2; exit 1; }
fi
"$browser" --version >/dev/null 2>&1 || {
  echo "error: $browser does not start (\`$browser --version\` failed)" >&2
  echo "fix: reinstall it (sudo apt-get install --reinstall chromium) or set CHROMIUM to another binary" >&2
  exit 1
}
