"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright (no
browser download). Tests skip, with the reason, where either is missing; CI installs both."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return os.environ.get("LAYERSCOPE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright):
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; .ci/run does it)")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[browser]')")
    return start()


def screenshot_dir(default: Path) -> Path:
    """Where screenshots go: $LAYERSCOPE_SCREENSHOTS (e.g. docs/explore for the README), else ``default``."""
    folder = Path(os.environ.get("LAYERSCOPE_SCREENSHOTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
