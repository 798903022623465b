"""The explore app in a real headless Chromium on a tiny model: type a prompt and see the grid,
hover a cell for its tooltip, click it for a decoded state, run a patching sweep, open a
reproduce link, cancel a long run. A screenshot of each view is saved (see browser.screenshot_dir)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from layerscope.explore import Explorer
from tests.conftest import tiny
from tests.explore.browser import launch, screenshot_dir, sync_playwright

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def app(one_thread):
    with Explorer([tiny("llama")], port=0) as server:
        yield server


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return screenshot_dir(tmp_path_factory.mktemp("explore-screenshots"))


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"errors in the page: {errors}"


def test_lens_grid_tooltip_and_decode(app, page, shots):
    page.goto(app.url)
    page.fill('form[data-view="lens"] input[name="prompt"]', "the capital of france is")
    page.click('form[data-view="lens"] button[type="submit"]')
    cells = page.locator("#out-lens td.ls-cell")
    cells.first.wait_for()
    assert cells.count() == 4 * 5  # 4 layers x 5 tokens
    assert page.locator("#out-lens th.ls-col").all_inner_texts() == ["the", "capital", "of", "france", "is"]
    last = page.locator('#out-lens tbody tr:first-child td[data-col="4"]')  # top row: the last layer
    last.hover()
    tip = page.locator(".ls-tooltip")
    tip.wait_for(state="visible")
    lines = tip.inner_text().splitlines()
    assert lines[0] == 'layer 3, position 4 ("is")' and len(lines) == 6  # the head, then the top 5
    assert lines[1].split()[0].strip('"') == last.inner_text().replace("\u00a0", " ")
    page.screenshot(path=str(shots / "lens.png"), full_page=True)
    last.click()
    decoded = page.locator('#out-decode .decoded[data-inspection="entity description"]')
    decoded.wait_for()
    assert page.locator("#out-decode .decoded").count() == 2
    assert "(layer 3, position 4)" in page.inner_text("#decode-cell")
    assert page.locator("#out-decode code.command").inner_text().startswith("layerscope patchscope")
    page.screenshot(path=str(shots / "decode.png"), full_page=True)


def test_patching_heatmap_and_its_reproduce_link(app, page, browser, shots):
    page.goto(app.url)
    page.click('#tabs button[data-view="patching"]')
    form = 'form[data-view="patching"]'
    page.fill(f'{form} input[name="clean"]', "the capital of france is")
    page.fill(f'{form} input[name="corrupt"]', "the capital of spain is")
    page.fill(f'{form} input[name="answer"]', " paris")
    page.fill(f'{form} input[name="wrong"]', " madrid")
    page.click(f"{form} button[type=submit]")
    page.locator("#out-patching a.repro-link").wait_for()
    assert page.locator("#out-patching td.ls-cell").count() == 4 * 5
    cell = page.locator('#out-patching tbody tr:first-child td[data-col="3"]')
    cell.hover()
    tip = page.locator(".ls-tooltip").inner_text()
    assert tip.startswith('layer 3, position 3 ("spain")') and "clean" in tip and "corrupt" in tip
    page.screenshot(path=str(shots / "patching.png"), full_page=True)
    first_grid = page.locator("#out-patching td.ls-cell").all_inner_texts()
    command = page.locator("#out-patching code.command").inner_text()
    assert command.startswith("layerscope sweep --clean 'the capital of france is'")

    href = page.locator("#out-patching a.repro-link").get_attribute("href")
    query = parse_qs(urlsplit(href).query)
    assert query["view"] == ["patching"] and query["answer"] == [" paris"]
    other = page.context.new_page()  # a new page: opening the link runs the view
    other.goto(href)
    other.locator("#out-patching a.repro-link").wait_for(timeout=TIMEOUT_MS)
    assert other.locator("#out-patching td.ls-cell").all_inner_texts() == first_grid
    assert other.locator("#out-patching code.command").inner_text() == command
    other.close()


def test_a_lens_link_opens_the_same_grid(app, page):
    page.goto(app.url.rstrip("/") + "/?view=lens&prompt=the%20cat%20is")
    page.locator("#out-lens a.repro-link").wait_for()
    assert page.locator("#out-lens th.ls-col").all_inner_texts() == ["the", "cat", "is"]
    assert page.input_value('form[data-view="lens"] input[name="prompt"]') == "the cat is"


def test_attend_and_metrics_views(app, page, shots):
    page.goto(app.url)
    page.click('#tabs button[data-view="attend"]')
    form = 'form[data-view="attend"]'
    page.fill(f"{form} textarea[name=prompt]", "the capital of france is")
    page.fill(f"{form} input[name=position]", "france")
    page.fill(f"{form} input[name=source]", "the city of italy")
    page.fill(f"{form} input[name=source_position]", "italy")
    page.fill(f"{form} input[name=answers]", " paris, rome")
    page.click(f"{form} button[type=submit]")
    page.locator("#out-attend svg.ls-lines").wait_for()
    assert page.locator("#out-attend circle.ls-point").count() == 3 * 4  # p_paris, p_rome, top_prob x 4 layers
    page.screenshot(path=str(shots / "attend.png"), full_page=True)
    page.click('#tabs button[data-view="metrics"]')
    page.fill('form[data-view="metrics"] input[name=limit]', "4")
    page.click('form[data-view="metrics"] button[type=submit]')
    page.locator("#out-metrics svg.ls-lines").first.wait_for()
    assert page.locator("#out-metrics svg.ls-lines").count() == 3
    page.locator("#out-metrics circle.ls-point").first.hover()
    assert "relative depth" in page.locator(".ls-tooltip").inner_text()
    page.screenshot(path=str(shots / "metrics.png"), full_page=True)


def test_an_error_is_a_message_on_the_page(app, page):
    page.goto(app.url)
    page.fill('form[data-view="lens"] input[name="prompt"]', "   ")
    page.click('form[data-view="lens"] button[type="submit"]')
    error = page.locator('.job[data-view="lens"] .error')
    error.wait_for()
    assert error.inner_text() == "prompt is empty"


def test_cancel_a_long_run(browser, one_thread):
    # pace: every step of a run waits 1 s, so a patching sweep (2 pieces on 4 layers) lasts seconds
    with Explorer([tiny("llama")], port=0, pace=1.0) as slow:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(slow.url)
        page.click('#tabs button[data-view="patching"]')
        form = 'form[data-view="patching"]'
        page.fill(f'{form} input[name="clean"]', "the capital of france is")
        page.fill(f'{form} input[name="corrupt"]', "the capital of spain is")
        page.fill(f'{form} input[name="answer"]', " paris")
        page.fill(f'{form} input[name="wrong"]', " madrid")
        page.click(f"{form} button[type=submit]")
        page.locator('.job[data-view="patching"] progress').wait_for()
        page.click('.job[data-view="patching"] button.cancel')
        page.locator('.job[data-view="patching"] .queued', has_text="cancelled").wait_for()
        assert page.locator("#out-patching td.ls-cell").count() == 0
        context.close()


def test_the_report_charts_show_values_on_hover(browser, tmp_path, one_thread):
    from layerscope.methods.lens import logit_lens
    from layerscope.methods.patching import activation_patching
    from layerscope.results.charts import lens_grid, patching_grid
    from layerscope.results.report import Report

    model = tiny("llama")
    report = Report("charts")
    report.chart(lens_grid(logit_lens(model, "the capital of france is", top_k=5), title="lens"))
    table = activation_patching(model, "the capital of france is", "the capital of spain is", " paris", " madrid")
    report.chart(patching_grid(table, title="patching"))
    path = report.write(tmp_path / "report.html")
    text = path.read_text()
    import re

    assert not re.search(r"(src|href)=[\"']?(https?:|//)", text) and "<script src" not in text  # self-contained
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        grids = page.locator("table.ls-grid")
        assert grids.count() == 2
        grids.nth(0).locator('tbody tr:first-child td[data-col="4"]').hover()
        tip = page.locator(".ls-tooltip").inner_text().splitlines()
        assert tip[0] == 'layer 3, position 4 ("is")' and len(tip) == 6
        grids.nth(1).locator('tbody tr:first-child td[data-col="3"]').hover()
        assert "corrupt" in page.locator(".ls-tooltip").inner_text()
    finally:
        page.close()
