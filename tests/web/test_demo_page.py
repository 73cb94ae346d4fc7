"""The demo and monitor pages in Debian's Chromium against a real server (issue 7).

Each test leaves a screenshot in ./test-artifacts/. The `page` fixture fails a test on
any script error, CSP violation or request that leaves the server's origin (offline).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect
from sqlalchemy import select

from service.db.engine import make_engine
from service.db.tables import Feedback
from service.routes.pages import STATIC_DIR
from tests.images import digit_png
from tests.live import LiveServer
from training.data import load_mnist

pytestmark = [pytest.mark.browser, pytest.mark.slow]
GALLERY = STATIC_DIR / "gallery"


def decided(page: Page, decision: str) -> None:
    expect(page.locator("#badge")).to_have_attribute(
        "data-decision", decision, timeout=15_000
    )


#: Text of the score gauges that runs past their drawing's edges (the view box), by content.
GAUGE_TEXT_OUTSIDE = """() => [...document.querySelectorAll('svg[data-chart^="gauge-"]')].flatMap((svg) => {
  const width = svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll("text")].filter((t) => { const b = t.getBBox(); return b.x < 0 || b.x + b.width > width; })
    .map((t) => t.textContent);
})"""


def test_uploaded_digit_is_accepted_with_the_right_class(
    page: Page, data_dir: Path, tmp_path: Path, artifacts: Path
) -> None:
    test = load_mnist(data_dir, train=False)
    digit = tmp_path / "two.png"
    digit.write_bytes(
        digit_png(test.x[1])
    )  # a clear 2 (the shipped model accepts it: see the gallery)
    page.goto("/")
    page.set_input_files("#file", str(digit))
    decided(page, "accept")
    expect(page.locator("#pred-label")).to_have_text(str(int(test.y[1])))
    expect(page.locator("#meaning")).to_contain_text("act on it")
    for chart in ("probabilities", "gauge-failure", "gauge-ood"):
        expect(page.locator(f'svg[data-chart="{chart}"]')).to_be_visible()
    expect(page.locator("#pred-set li")).to_have_count(1)
    expect(page.locator("#set-hint")).to_contain_text("Over digits like the training data")
    assert page.eval_on_selector("#file", "f => f.value") == ""  # the same file can be chosen again
    expect(page.locator("#request-id")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    page.screenshot(path=str(artifacts / "demo-upload-accept.png"), full_page=True)


def test_drawn_stroke_is_classified_on_pen_up(page: Page, artifacts: Path) -> None:
    page.goto("/")
    box = page.locator("#pad").bounding_box()
    assert box is not None
    x, top, bottom = (
        box["x"] + box["width"] / 2,
        box["y"] + box["height"] * 0.15,
        box["y"] + box["height"] * 0.85,
    )
    page.mouse.move(x, top)
    page.mouse.down()
    for i in range(1, 16):
        page.mouse.move(x + i * 0.3, top + (bottom - top) * i / 15)
    page.mouse.up()
    decided(page, "accept")
    expect(page.locator("#pred-label")).to_have_text("1")  # one vertical stroke is a 1
    page.screenshot(path=str(artifacts / "demo-draw-1.png"), full_page=True)


def test_noise_upload_is_rejected_as_out_of_distribution(
    page: Page, artifacts: Path
) -> None:
    page.goto("/")
    page.set_input_files("#file", str(GALLERY / "noise.png"))
    decided(page, "reject_ood")
    expect(page.locator("#badge")).to_contain_text("out of distribution")
    expect(page.locator("#meaning")).to_contain_text("do not use")
    expect(page.locator("#set-hint")).to_contain_text("No guarantee for this input")
    expect(page.locator("#pred-label")).to_have_class(re.compile(r"\bvoid\b"))  # shown, but struck through
    assert page.evaluate(GAUGE_TEXT_OUTSIDE) == []  # the threshold label is not cut off
    page.screenshot(path=str(artifacts / "demo-noise-reject.png"), full_page=True)


def test_gallery_by_keyboard_and_feedback_reaches_the_database(
    page: Page, web_db: str, artifacts: Path
) -> None:
    page.goto("/")
    ambiguous = page.locator('#gallery button[data-file^="ambiguous-"]').first
    ambiguous.focus()
    page.keyboard.press("Enter")
    decided(page, "abstain")
    request_id = page.locator("#request-id").inner_text()
    page.select_option("#truth", "9")
    page.fill("#note", "from the browser test")
    page.click("#feedback button[type=submit]")
    expect(page.locator("#fb-status")).to_contain_text("recorded")
    expect(page.locator("#fb-status")).not_to_contain_text("in place of")
    page.screenshot(path=str(artifacts / "demo-gallery-feedback.png"), full_page=True)
    page.select_option("#truth", "4")  # a second thought: the page says it replaced the first
    page.fill("#note", "")
    page.click("#feedback button[type=submit]")
    expect(page.locator("#fb-status")).to_contain_text("label 4 recorded")
    expect(page.locator("#fb-status")).to_contain_text("in place of the label sent before")
    engine = make_engine(web_db)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Feedback.true_label, Feedback.note, Feedback.replaced_at.is_(None)).where(
                Feedback.request_id == request_id
            ).order_by(Feedback.id)
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(9, "from the browser test", False), (4, None, True)]


def test_monitor_page_renders_its_charts_and_refreshes(
    page: Page, web_server: LiveServer, artifacts: Path
) -> None:
    # Traffic of every kind, one labelled request, so every chart has something to draw.
    items = json.loads((GALLERY / "gallery.json").read_text())["items"]
    ambiguous = next(i["file"] for i in items if i["group"] == "ambiguous")
    for name in ("clear-7.png", ambiguous, "noise.png"):
        r = httpx.post(
            f"{web_server.base}/v1/predict",
            content=(GALLERY / name).read_bytes(),
            headers={"content-type": "image/png"},
        )
        assert r.status_code == 200
    httpx.post(
        f"{web_server.base}/v1/requests/{r.json()['request_id']}/feedback",
        json={"label": 0, "note": None},
    ).raise_for_status()
    page.goto("/monitor?every=1")
    for chart in ("timeline", "confidence", "reliability"):
        expect(page.locator(f'svg[data-chart="{chart}"]')).to_be_visible(timeout=15_000)
    expect(page.locator("#t-requests")).not_to_have_text("–")
    assert int(page.locator("#t-requests").inner_text()) >= 3
    expect(page.locator("#t-ood")).not_to_have_text("0.0%")
    expect(page.locator("#t-accept")).to_have_text(re.compile(r"^\d+\.\d%$"))  # a rate beside rates, not a count
    expect(page.locator("#capped")).to_be_hidden()  # a few requests, far under the feed's row limit: the whole window
    first = page.locator("#status").inner_text()
    expect(page.locator("#status")).not_to_have_text(
        first, timeout=5_000
    )  # it refreshed by itself
    assert page.locator("#status").get_attribute("aria-live") == "off"  # timestamps are not read aloud
    page.click("#pause")
    expect(page.locator("#status")).to_contain_text("paused")
    expect(page.locator("#status")).not_to_contain_text("refreshes every")
    page.screenshot(path=str(artifacts / "monitor.png"), full_page=True)


def test_an_admin_only_monitor_asks_for_the_key_and_sends_it(browser: Browser, web_server: LiveServer) -> None:
    """VIGIL_METRICS_ADMIN_ONLY, staged in the browser: the feed refuses requests without the
    key (this server's own answer otherwise). Its own context: the refusals are console errors."""
    context = browser.new_context(base_url=web_server.base)
    page = context.new_page()
    sent: list[str | None] = []

    def admin_only(route: Route) -> None:
        sent.append(route.request.headers.get("x-api-key"))
        if sent[-1] == "admin-secret":
            route.continue_()
        elif sent[-1] == "a-client-key":
            body = {"error": {"code": "forbidden", "message": "this needs an admin key, not a client key", "request_id": "r"}}
            route.fulfill(status=403, json=body)
        else:
            body = {"error": {"code": "unauthorized", "message": "a valid admin API key is required", "request_id": "r"}}
            route.fulfill(status=401, json=body)

    page.route("**/v1/monitor", admin_only)
    page.goto("/monitor?every=1")
    expect(page.locator("#status")).to_contain_text("for admins: a valid admin API key is required")
    expect(page.locator("#key-form")).to_be_visible()
    page.wait_for_timeout(2500)
    assert sent == [None]  # no pointless retries every second while refused
    page.fill("#api-key", "a-wrong-key")
    page.click("#key-form button")
    expect(page.locator("#status")).to_contain_text("That key was refused")
    assert page.locator("#status").get_attribute("aria-live") == "polite"
    # A client key's 403 hid the form for good, the key kept for the tab: the page was stuck.
    page.fill("#api-key", "a-client-key")
    page.click("#key-form button")
    expect(page.locator("#status")).to_contain_text("That key was refused: this needs an admin key, not a client key.")
    expect(page.locator("#key-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('vigil-api-key')") is None
    page.fill("#api-key", "admin-secret")
    page.click("#key-form button")
    expect(page.locator('svg[data-chart="timeline"]')).to_be_visible(timeout=15_000)
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("refreshes every")
    context.close()


def test_the_monitor_says_when_its_figures_are_stale_or_capped(browser: Browser, web_server: LiveServer) -> None:
    """Figures of a server that stopped answering stayed at full strength with no time; figures
    at the feed's row limit read as the whole window's. Its own context: failures are console errors."""
    context = browser.new_context(base_url=web_server.base)
    page = context.new_page()
    failing: list[bool] = [False]

    def feed(route: Route) -> None:
        if failing[0]:
            route.abort()
            return
        answer = route.fetch().json()
        answer["window"]["row_limit"] = answer["requests"]  # as if the cap were reached
        route.fulfill(json=answer)

    page.route("**/v1/monitor", feed)
    httpx.post(f"{web_server.base}/v1/predict", content=(GALLERY / "clear-7.png").read_bytes(), headers={"content-type": "image/png"}).raise_for_status()
    page.goto("/monitor?every=99999999")  # past the browser's timer limit: the default period instead
    expect(page.locator("#status")).to_contain_text("refreshes every 5 s", timeout=15_000)
    expect(page.locator("#capped")).to_be_visible()
    expect(page.locator("#capped")).to_contain_text("newest")
    assert "stale" not in (page.locator("body").get_attribute("class") or "")
    failing[0] = True
    expect(page.locator("#status")).to_contain_text("Could not update since", timeout=15_000)
    expect(page.locator("#status")).not_to_contain_text("?.")
    assert "stale" in (page.locator("body").get_attribute("class") or "")
    failing[0] = False
    expect(page.locator("#status")).to_contain_text("Updated", timeout=15_000)
    assert "stale" not in (page.locator("body").get_attribute("class") or "")
    context.close()


#: Chart labels cut off by their chart's edge or running into another label.
LABELS_THAT_MEET = """[...document.querySelectorAll('svg.chart')].flatMap((svg) => {
    const box = svg.getBoundingClientRect(), texts = [...svg.querySelectorAll('text')].map((t) => [t.textContent, t.getBBox(), t.getBoundingClientRect()]);
    const out = texts.filter(([, , r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5)
                     .map(([s]) => `${svg.dataset.chart}: '${s}' cut off`);
    texts.forEach(([s, a, ra], i) => texts.slice(i + 1).forEach(([u, b, rb]) => {
        const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left), h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
        if (w > 0.5 && h > 0.5) out.push(`${svg.dataset.chart}: '${s}' meets '${u}'`); }));
    return out; })"""


@pytest.mark.parametrize("path", ["/", "/monitor"])
def test_pages_fit_a_phone_screen(page: Page, path: str, artifacts: Path) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(path)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # Every chart is drawn 420-920 units wide and shrinks to the card: its labels must stay legible.
    if path == "/monitor":
        charts = ("timeline", "confidence", "reliability")
    else:  # an ambiguous digit: the ensemble's samples disagree, so every chart of an answer is drawn
        page.locator('#gallery button[data-file^="ambiguous-"]').first.click()
        charts = ("probabilities", "gauge-failure", "gauge-ood", "samples")
    for chart in charts:
        expect(page.locator(f'svg[data-chart="{chart}"]')).to_be_visible(timeout=15_000)
    # The font size on screen: the CSS size times the chart's scale to its card.
    sizes = page.evaluate("""[...document.querySelectorAll('svg.chart text')]
        .map((t) => [t.closest('svg').dataset.chart, parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a])""")
    assert {c for c, _ in sizes} >= set(charts) and min(px for _, px in sizes) >= 9, sizes
    # ...and none is cut off by its chart's edge or runs into another: drawn with labels that
    # test it (two 45 % bars side by side; a timeline whose scale reads 180).
    if path == "/":
        page.evaluate("""async () => { const c = await import('/static/charts.js');
            c.probabilityBars(document.getElementById('chart-probs'), [0.45, 0.45, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                              [...'0123456789'], 0); }""")
    else:
        page.locator("#pause").click()  # the next refresh must not redraw over the test's chart
        page.evaluate("""async () => { const c = await import('/static/charts.js');
            const start = Date.now() - 3600e3, b = (i, n) => ({start: new Date(start + i * 60e3).toISOString(), accept: n, abstain: 0, reject_ood: 0, error: 0});
            c.stackedTimeline(document.getElementById('chart-timeline'), [b(0, 180), b(1, 90), b(2, 0)], ['accept', 'abstain', 'reject_ood', 'error']); }""")
    problems = page.evaluate(LABELS_THAT_MEET)
    assert problems == [], problems
    page.screenshot(
        path=str(artifacts / f"phone-{path.strip('/') or 'demo'}.png"), full_page=True
    )


def test_probabilities_are_never_shown_as_100_percent_nor_two_as_one(page: Page) -> None:
    """The headline says "over 99.9%" for a calibrated 0.99996; the chart said 100%. On a phone
    it rounded 0.502 and 0.498 both to 50% under a headline of 50.2%."""
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/")
    texts = page.evaluate("""async () => { const c = await import('/static/charts.js'), host = document.getElementById('details');
        host.hidden = false;
        const draw = (probs) => { c.probabilityBars(document.getElementById('chart-probs'), probs, [...'0123456789'], 0);
            const svg = document.querySelector('svg[data-chart="probabilities"]');
            return [[...svg.querySelectorAll('text')].map((t) => t.textContent), svg.getAttribute('aria-label')]; };
        return [draw([0.99996, 0.00004, 0, 0, 0, 0, 0, 0, 0, 0]), draw([0.502, 0, 0, 0, 0.498, 0, 0, 0, 0, 0]), draw([0.452, 0.448, 0, 0.1, 0, 0, 0, 0, 0, 0])]; }""")
    (certain, certain_label), (tie, _), (neighbours, _) = texts
    assert ">99%" in certain and not any("100" in t for t in certain) and "0 >99.9%" in certain_label, texts
    assert "50.2%" in tie and "49.8%" in tie, tie
    assert "45.2%" in neighbours and "44.8%" in neighbours, neighbours
    assert page.evaluate(LABELS_THAT_MEET) == [], neighbours  # the neighbours' longer labels do not meet


def test_api_docs_render_offline(page: Page, artifacts: Path) -> None:
    """Swagger UI comes from the server itself: the `page` fixture fails on any off-origin
    request, and the operations must render (a CDN-loaded page was blank offline)."""
    page.goto("/docs")
    expect(page.locator(".swagger-ui .opblock-summary-path", has_text="/v1/predict/batch")).to_be_visible(timeout=15_000)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Vigil")
    page.screenshot(path=str(artifacts / "docs-offline.png"))


#: Delays the answer to the next /v1/predict call by 2.5 s when `window.delayNext` is set.
SLOW_NEXT_ANSWER = """
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const slow = window.delayNext && String(args[0]).endsWith("/v1/predict");
  if (slow) window.delayNext = false;
  const answer = await realFetch(...args);
  if (slow) await new Promise((done) => setTimeout(done, 2500));
  return answer;
};
"""


def test_a_late_answer_never_replaces_a_newer_one(page: Page) -> None:
    page.add_init_script(SLOW_NEXT_ANSWER)
    page.goto("/")
    page.click('#gallery button[data-file="clear-7.png"]')
    decided(page, "accept")
    page.evaluate("window.delayNext = true")
    page.click('#gallery button[data-file="fashion-trouser.png"]')
    # While the trouser's answer is on its way, nothing of the 7's verdict stays on screen.
    expect(page.locator("#badge")).to_have_text("Thinking…")
    expect(page.locator("#pred-label")).to_have_text("–")
    expect(page.locator("#details")).to_be_hidden()
    page.click('#gallery button[data-file="clear-2.png"]')
    decided(page, "accept")
    expect(page.locator("#pred-label")).to_have_text("2")
    shown = page.locator("#request-id").inner_text()
    page.wait_for_timeout(3000)  # the trouser's answer arrives now, late
    expect(page.locator("#badge")).to_have_attribute("data-decision", "accept")
    expect(page.locator("#pred-label")).to_have_text("2")
    assert page.locator("#request-id").inner_text() == shown


def test_a_two_stroke_digit_is_sent_once_when_the_pen_rests(page: Page) -> None:
    """Each pen lift used to send the drawing: a 7's first stroke was classified and logged."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/v1/predict") else None)
    page.goto("/")
    box = page.locator("#pad").bounding_box()
    assert box is not None
    left, right, top, bottom = box["x"] + box["width"] * 0.25, box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.2, box["y"] + box["height"] * 0.85
    for start, end in (((left, top), (right, top)), ((right, top), (left + (right - left) * 0.3, bottom))):  # a 7: bar, then stem
        page.mouse.move(*start)
        page.mouse.down()
        for i in range(1, 11):
            page.mouse.move(start[0] + (end[0] - start[0]) * i / 10, start[1] + (end[1] - start[1]) * i / 10)
        page.mouse.up()
    expect(page.locator("#badge")).not_to_have_text("No input yet", timeout=15_000)
    expect(page.locator("#badge")).not_to_have_text("Thinking…", timeout=15_000)
    page.wait_for_timeout(1000)
    assert len(sent) == 1, sent
    page.click("#clear-drawing")  # wipes the verdict with the drawing
    expect(page.locator("#badge")).to_have_text("No input yet")
    page.click("#classify-drawing")
    expect(page.locator("#badge")).to_have_text("Nothing to classify")
    assert len(sent) == 1


def test_the_decision_comes_into_view_and_says_no_more_than_it_knows(page: Page, artifacts: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(reduced_motion="reduce")  # an instant scroll: nothing to wait for
    page.goto("/")
    noise = page.locator('#gallery button[data-file="noise.png"]')
    noise.scroll_into_view_if_needed()  # the examples are below the fold, the badge above them
    noise.click()
    decided(page, "reject_ood")
    page.wait_for_function("() => { const t = document.getElementById('badge').getBoundingClientRect().top; return t >= 0 && t < 800; }", timeout=5000)
    # Calibration holds for digits like the training data: no percentage for noise.
    expect(page.locator("#confidence")).to_have_text("— no confidence can be given: the input is unlike the training data")
    page.screenshot(path=str(artifacts / "demo-noise-in-view.png"))
    page.click('#gallery button[data-file="clear-7.png"]')
    decided(page, "accept")
    expect(page.locator("#confidence")).to_have_text(re.compile(r"^(over 99\.9%|\d{1,2}\.\d%) calibrated confidence$"))
    # No label chosen: nothing is recorded (it defaulted to 0, a wrong label in one click).
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/feedback") else None)
    page.click("#feedback button[type=submit]")
    assert page.eval_on_selector("#truth", "s => s.validity.valueMissing") is True
    page.wait_for_timeout(300)
    assert sent == [] and page.locator("#fb-status").inner_text() == ""


#: Delays the download of the gallery's trouser by 1.5 s.
SLOW_TROUSER = """
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const answer = await realFetch(...args);
  if (String(args[0]).endsWith("fashion-trouser.png")) await new Promise((done) => setTimeout(done, 1500));
  return answer;
};
"""


def test_the_last_example_clicked_wins_even_when_an_earlier_one_downloads_slowly(page: Page) -> None:
    """The call's turn was taken only once the example had downloaded: a slow trouser clicked
    before a 3 was answered after it, and its Reject replaced the 3's Accept."""
    page.add_init_script(SLOW_TROUSER)
    page.goto("/")
    page.click('#gallery button[data-file="fashion-trouser.png"]')
    page.click('#gallery button[data-file="clear-3.png"]')
    decided(page, "accept")
    page.wait_for_timeout(2500)  # the trouser has downloaded, and would have been sent, by now
    expect(page.locator("#badge")).to_have_attribute("data-decision", "accept")
    expect(page.locator("#pred-label")).to_have_text("3")


def test_a_failed_example_says_so_in_words_beside_no_earlier_picture(browser: Browser, web_server: LiveServer) -> None:
    # Its own context: the failed loads are console errors, which the `page` fixture refuses.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=web_server.base)
    page = context.new_page()
    page.goto("/")
    page.click('#gallery button[data-file="fashion-trouser.png"]')
    decided(page, "reject_ood")
    expect(page.locator("#preview")).to_be_visible()
    page.route("**/static/gallery/clear-8.png", lambda route: route.abort())
    page.click('#gallery button[data-file="clear-8.png"]')
    decided(page, "error")
    expect(page.locator("#meaning")).to_contain_text("The service did not answer")  # not the browser's "Failed to fetch"
    expect(page.locator("#preview")).to_be_hidden()  # the trouser's picture is gone with its answer
    page.unroute("**/static/gallery/clear-8.png")
    page.route("**/static/gallery/clear-8.png", lambda route: route.fulfill(status=404, body="gone"))
    page.click('#gallery button[data-file="clear-8.png"]')
    expect(page.locator("#meaning")).to_contain_text("could not be loaded (HTTP 404)")
    context.close()


def test_a_model_card_that_failed_at_load_is_asked_again_with_the_next_answer(browser: Browser, web_server: LiveServer) -> None:
    """Without it every answer lacked its explanation until a reload."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=web_server.base)
    page = context.new_page()
    failed: list[str] = []

    def once(route: Route) -> None:
        if not failed:
            failed.append(route.request.url)
            route.fulfill(status=503, content_type="application/json", body='{"error": {"code": "unavailable", "message": "x", "request_id": null}}')
        else:
            route.continue_()

    page.route("**/v1/models", once)
    page.goto("/")
    page.click('#gallery button[data-file="clear-7.png"]')
    decided(page, "accept")
    assert len(failed) == 1
    expect(page.locator("#meaning")).to_contain_text("act on it")
    expect(page.locator("#set-hint")).to_contain_text("Over digits like the training data")
    expect(page.locator("#truth option")).to_have_count(11)  # choose…, then the card's class names
    context.close()


def test_the_verdict_under_the_pad_is_for_drawings_and_never_names_a_rejected_class(page: Page) -> None:
    page.set_viewport_size({"width": 375, "height": 740})  # where the pad's copy of the verdict shows
    page.goto("/")
    verdict = page.locator("#pad-verdict")
    expect(verdict).to_be_visible()
    page.click('#gallery button[data-file="fashion-bag.png"]')
    decided(page, "reject_ood")
    expect(verdict).to_be_hidden()  # under an empty pad it read as the pad's verdict
    page.evaluate("""async () => { const r = await import('/static/result.js');
        r.showPrediction({decision: 'reject_ood', prediction: {label: 0, class_name: '0'}, probabilities: Array(10).fill(0.1),
            confidence: 0.1, failure: {method: 'msp', score: 0.9, threshold: 0.4, flagged: true}, ood: {method: 'm', score: 50, threshold: 9, flagged: true},
            prediction_set: [0], uncertainty: {predictive_entropy: 2.3, mutual_information: null}, samples: null,
            model: {name: 'm', version: '1', method: 'deterministic'}, latency_ms: 1, request_id: 'r'}, null); }""")
    assert page.locator("#pad-verdict").inner_text() == "Reject: out of distribution"  # no class after it
    page.click("#clear-drawing")
    expect(verdict).to_be_visible()
    expect(verdict).to_have_text("No input yet")


def test_the_answer_stays_in_view_while_examples_far_down_are_clicked(page: Page) -> None:
    """Side by side, the result panel is sticky: scrolling to it pushed the examples off screen
    before every click."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(reduced_motion="reduce")
    page.goto("/")
    noise = page.locator('#gallery button[data-file="noise.png"]')
    noise.scroll_into_view_if_needed()
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    noise.click()
    decided(page, "reject_ood")
    top = page.evaluate("document.getElementById('badge').getBoundingClientRect().top")
    assert 0 <= top < 800 and page.evaluate("window.scrollY") == scrolled  # in view, with the examples where they were
    expect(page.locator("#void-note")).to_be_visible()  # the charts of a rejected input are greyed, and say why
    page.click('#gallery button[data-file="clear-2.png"]')
    decided(page, "accept")
    assert page.evaluate("window.scrollY") == scrolled
    expect(page.locator("#void-note")).to_be_hidden()


def test_a_file_dropped_anywhere_on_the_page_is_classified(page: Page) -> None:
    """Outside the drop zone the browser opened the file in place of the demo."""
    page.goto("/")
    page.evaluate("""async () => {
        const blob = await (await fetch('/static/gallery/clear-7.png')).blob();
        const data = new DataTransfer();
        data.items.add(new File([blob], 'seven.png', {type: 'image/png'}));
        const target = document.querySelector('footer');
        for (const type of ['dragover', 'drop']) target.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
    }""")
    decided(page, "accept")
    expect(page.locator("#pred-label")).to_have_text("7")
    # The zone itself still takes one, classified once.
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/v1/predict") else None)
    page.evaluate("""async () => {
        const blob = await (await fetch('/static/gallery/clear-2.png')).blob();
        const data = new DataTransfer();
        data.items.add(new File([blob], 'two.png', {type: 'image/png'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    }""")
    expect(page.locator("#pred-label")).to_have_text("2", timeout=15_000)
    page.wait_for_timeout(500)
    assert len(sent) == 1, sent
