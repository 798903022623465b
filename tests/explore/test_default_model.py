"""explore on the real default model, in headless Chromium: the lens link of the issue shows " Paris"
as the last layer's top token at the last position. Also times request -> drawn grid (lens on a
10-token prompt; a 30 x 10 patching sweep) and saves a screenshot of each view (README: run with
LAYERSCOPE_SCREENSHOTS=docs/explore)."""

from __future__ import annotations

import json
import time

import pytest

from layerscope.explore import Explorer
from tests.explore.browser import launch, screenshot_dir, sync_playwright

pytestmark = pytest.mark.integration
TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def browser():
    # one Playwright per module: a second sync_playwright() inside the first one's loop is refused
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(default_model, browser):
    with Explorer([default_model], port=0) as app:
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.app = app
        yield tab
        tab.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return screenshot_dir(tmp_path_factory.mktemp("explore-default"))


def timed_open(page, query: str, ready: str) -> float:
    start = time.perf_counter()
    page.goto(page.app.url.rstrip("/") + "/?" + query)
    page.locator(ready).first.wait_for()
    return time.perf_counter() - start


def test_the_lens_link_shows_paris(page, shots):
    seconds = timed_open(page, "view=lens&prompt=The%20capital%20of%20France%20is", "#out-lens a.repro-link")
    last_layer_last_position = page.locator('#out-lens tbody tr:first-child td[data-col="4"]')
    assert page.locator("#out-lens tbody tr:first-child th").inner_text() == "29"
    assert last_layer_last_position.inner_text().replace("\u00a0", " ") == " Paris"
    last_layer_last_position.hover()
    assert '" Paris"' in page.locator(".ls-tooltip").inner_text()
    page.screenshot(path=str(shots / "lens.png"), full_page=True)
    # decode the state of " France" at layer 12 (the side panel)
    page.locator('#out-lens tbody tr:nth-child(18) td[data-col="3"]').click()  # row 18 from the top: layer 12
    page.locator('#out-decode .decoded[data-inspection="entity description"]').wait_for()
    assert "(layer 12, position 3)" in page.inner_text("#decode-cell")
    page.screenshot(path=str(shots / "decode.png"), full_page=True)
    _note(shots, "lens_5_tokens_s", seconds)


def test_timings_and_the_other_views(page, shots):
    prompt = "The%20Eiffel%20Tower%20is%20located%20in%20the%20city%20of"  # 10 tokens
    lens = timed_open(page, f"view=lens&prompt={prompt}", "#out-lens a.repro-link")
    assert page.locator("#out-lens td.ls-cell").count() == 30 * 10
    query = (
        f"view=patching&clean={prompt}&corrupt=The%20Colosseum%20is%20located%20in%20the%20city%20of"
        "&answer=%20Paris&wrong=%20Rome"
    )
    patching = timed_open(page, query, "#out-patching a.repro-link")
    assert page.locator("#out-patching td.ls-cell").count() == 30 * 10
    page.locator('#out-patching tbody tr:nth-child(20) td[data-col="3"]').hover()
    page.screenshot(path=str(shots / "patching.png"), full_page=True)
    query = (
        "view=attend&prompt=Q%3A%20What%20is%20the%20capital%20of%20Spain%3F%0AA%3A%20Madrid%0AQ%3A%20What%20is"
        "%20the%20capital%20of%20France%3F%0AA%3A&position=France&source=The%20country%20Italy"
        "&source_position=Italy&answers=%20Paris%2C%20Rome"
    )
    timed_open(page, query, "#out-attend a.repro-link")
    page.screenshot(path=str(shots / "attend.png"), full_page=True)
    from layerscope.models.registry import BUILTIN_MODELS

    models = ",".join(n for n in ("smollm2-135m", "gemma3-270m") if BUILTIN_MODELS[n].is_installed())
    query = f"view=metrics&limit=32&metrics=prompt_entropy,dataset_entropy,curvature&models={models}"
    timed_open(page, query, "#out-metrics a.repro-link")
    assert page.locator("#out-metrics svg.ls-lines").count() == 3
    page.screenshot(path=str(shots / "metrics.png"), full_page=True)
    _note(shots, "lens_10_tokens_s", lens)
    _note(shots, "patching_30x10_s", patching)


def _note(folder, key: str, seconds: float) -> None:
    path = folder / "timings.json"
    notes = json.loads(path.read_text()) if path.exists() else {}
    notes[key] = round(seconds, 2)
    path.write_text(json.dumps(notes, indent=1) + "\n")
    print(f"{key}: {seconds:.2f} s")


def test_the_explore_command_serves_the_paris_link(default_model, browser, tmp_path):
    """The real command in its own process: it prints the URL, serves the link, and stops on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "layerscope.cli.main", "explore", "--port", "0"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        url = process.stdout.readline().strip()  # the command's one line of stdout, once the model is loaded
        assert url.startswith("http://127.0.0.1:"), f"{url!r}; stderr: {log.read_text()[-2000:]}"
        tab = browser.new_page()
        try:
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(url.rstrip("/") + "/?view=lens&prompt=The%20capital%20of%20France%20is")
            tab.locator("#out-lens a.repro-link").wait_for()
            cell = tab.locator('#out-lens tbody tr:first-child td[data-col="4"]').inner_text()
            assert cell.replace("\u00a0", " ") == " Paris"
        finally:
            tab.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=30) == 0, log.read_text()[-2000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
