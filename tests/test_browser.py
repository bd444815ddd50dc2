"""The viewer in a real headless Chromium (the distribution's package, driven by selenium).

The page lists a trace made by a program run under `traceroot-run`, opens it, shows the
span tree and the LLM span's input and chat; an output holding markup shows as text and
runs nothing; a trace written while the page is open appears without a reload.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import check
from viewer_helpers import REPO, Viewer, corrupt_store, run_traced

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs chromium and chromium-driver (.ci/run installs them)"
)

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

AGENT = f"""
from traceroot import observe, update_current_span, using_attributes

@observe(name="lookup", type="tool")
def lookup(city):
    return "sunny"

@observe(name="chat-model", type="llm")
def chat_model(question):
    update_current_span(
        model="demo-model",
        prompt=[{{"role": "system", "content": "You are terse."}},
                {{"role": "user", "content": question}}],
        usage={{"input_tokens": 11, "output_tokens": 5}},
    )
    return {PAYLOAD!r}

@observe(name="agent-run", type="agent")
def agent(question):
    lookup("Paris")
    return chat_model(question)

with using_attributes(session_id="browser-session"):
    agent("Weather in Paris?")
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check_: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check_()
        except Exception:  # not rendered yet (stale or missing element)
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("the page did not get there in time")
        time.sleep(0.1)


def test_the_page_shows_a_trace_its_chat_and_markup_as_text(browser: Any, tmp_path: Path):
    store_dir = tmp_path / "store"
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    check(run_traced(store_dir, script))
    with Viewer(store_dir) as viewer:
        browser.get(viewer.url + "/")
        row = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr.row"))
        assert "agent-run" in row.text
        assert "browser-session" in row.text
        row.click()

        rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".span-row"))
        assert [r.find_element(By.CSS_SELECTOR, ".title").text for r in rows] == [
            "agent-run",
            "lookup",
            "chat-model",
        ]
        assert len(browser.find_elements(By.CSS_SELECTOR, ".bar")) == 3  # the waterfall
        rows[2].click()
        detail = wait_for(
            lambda: (
                browser.find_element(By.CSS_SELECTOR, ".detail h3").text.endswith("chat-model")
                and browser.find_element(By.CSS_SELECTOR, ".detail")
            )
        )
        roles = [
            m.get_attribute("data-role") for m in detail.find_elements(By.CSS_SELECTOR, ".msg")
        ]
        assert roles == ["system", "user", "assistant"]
        contents = [c.text for c in detail.find_elements(By.CSS_SELECTOR, ".msg .content")]
        assert contents[:2] == ["You are terse.", "Weather in Paris?"]
        assert contents[2] == PAYLOAD  # the markup, shown as its characters
        assert "Weather in Paris?" in detail.find_element(By.CSS_SELECTOR, "pre.input").text
        assert "demo-model" in detail.text and "11 in" in detail.text

        # Nothing ran and nothing was made of the payload: no script, no image, no request.
        assert browser.execute_script("return window.__pwned") is None
        assert browser.find_elements(By.CSS_SELECTOR, "main img, main script") == []
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []

        # The session page: the conversation in order.
        browser.find_element(By.LINK_TEXT, "browser-session").click()
        turn = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, ".turn"))
        assert "Weather in Paris?" in turn.text and PAYLOAD in turn.text
        assert browser.execute_script("return window.__pwned") is None


def test_a_new_trace_appears_without_a_reload(browser: Any, tmp_path: Path):
    store_dir = tmp_path / "store"
    first = tmp_path / "first.py"
    first.write_text("from traceroot import observe\nobserve(name='first-run')(lambda: 1)()\n")
    second = tmp_path / "second.py"
    second.write_text("from traceroot import observe\nobserve(name='second-run')(lambda: 2)()\n")
    check(run_traced(store_dir, first))
    with Viewer(store_dir) as viewer:
        browser.get(viewer.url + "/")
        wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr.row"))
        browser.execute_script("window.__same_page = true")
        check(run_traced(store_dir, second))  # another program, while the page is open
        names = wait_for(
            lambda: (
                (
                    found := [
                        r.find_element(By.CSS_SELECTOR, ".name").text
                        for r in browser.find_elements(By.CSS_SELECTOR, "tr.row")
                    ]
                )
                and len(found) == 2
                and found
            ),
            timeout=15,
        )
        assert names == ["second-run", "first-run"]
        assert browser.execute_script("return window.__same_page") is True  # not reloaded


def _empty_text(browser: Any) -> str:
    return browser.find_element(By.CSS_SELECTOR, "td.empty").text


def test_a_search_or_filter_that_matches_nothing_says_so(browser: Any, tmp_path: Path):
    empty_dir = tmp_path / "empty"
    with Viewer(empty_dir) as viewer:  # a store with no traces: how to fill it
        browser.get(viewer.url + "/")
        assert "No traces yet" in wait_for(lambda: _empty_text(browser))

    store_dir = tmp_path / "store"
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    check(run_traced(store_dir, script))
    with Viewer(store_dir) as viewer:
        browser.get(viewer.url + "/")
        wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr.row"))
        search = browser.find_element(By.CSS_SELECTOR, "input[type=search]")
        search.send_keys("no-such-words-anywhere")
        text = wait_for(lambda: _empty_text(browser))
        assert "No traces match this search" in text and "No traces yet" not in text
        search.send_keys(Keys.CONTROL, "a")
        search.send_keys(Keys.BACKSPACE)
        wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr.row"))

        browser.find_element(By.CSS_SELECTOR, ".filters input[type=checkbox]").click()
        text = wait_for(lambda: _empty_text(browser))  # the trace has no error
        assert "No traces match these filters" in text and "No traces yet" not in text
        browser.find_element(By.CSS_SELECTOR, "td.empty button").click()  # show all again
        row = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr.row"))
        assert "agent-run" in row.text


def test_a_session_turn_keeps_its_duration_and_user_apart(browser: Any, tmp_path: Path):
    store_dir = tmp_path / "store"
    check(run_traced(store_dir, REPO / "examples" / "agent.py"))  # user demo-user
    with Viewer(store_dir) as viewer:
        browser.get(viewer.url + "/#/session/demo-session")
        meta = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, ".turn .meta"))
        assert "weather_agent" in meta.text
        assert re.search(r"\d(µs|ms|s)\s+user demo-user", meta.text), meta.text
        # Apart on screen too: the user label starts after the duration ends, with a gap.
        duration, user = browser.execute_script(
            """
            const meta = arguments[0];
            const walker = document.createTreeWalker(meta, NodeFilter.SHOW_TEXT);
            const boxes = {};
            for (let node; (node = walker.nextNode());) {
              const range = document.createRange();
              range.selectNodeContents(node);
              const box = range.getBoundingClientRect();
              if (/^\\d[\\d.]*(µs|ms|s)$/.test(node.textContent.trim())) boxes.duration = box.right;
              if (node.textContent.includes("user")) boxes.user = box.left;
            }
            return [boxes.duration, boxes.user];
            """,
            meta,
        )
        assert duration is not None and user is not None and user - duration >= 4


def test_a_store_it_cannot_read_is_shown_in_words(browser: Any, tmp_path: Path):
    store_dir = tmp_path / "store"
    path = corrupt_store(store_dir)
    with Viewer(store_dir) as viewer:
        browser.get(viewer.url + "/")
        text = wait_for(lambda: "Cannot read" in _empty_text(browser) and _empty_text(browser))
        assert str(path) in text and "is not a readable trace store" in text
        assert "move it aside or delete it" in text and "Failed to fetch" not in text


BIDI_AGENT = """
from traceroot import observe

@observe(name="invoice\u202egnp.exe")
def named(text):
    return "safe \u2066hidden\u2069 end"

named("abc\u202edef")
"""

_ANY_BIDI = "return /[\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]/"


def test_bidirectional_controls_are_shown_not_obeyed(browser: Any, tmp_path: Path):
    store_dir = tmp_path / "store"
    script = tmp_path / "bidi.py"
    script.write_text(BIDI_AGENT)
    check(run_traced(store_dir, script))

    def no_control_left() -> bool:
        text = ".test(document.getElementById('app').textContent)"
        titles = ".test([...document.querySelectorAll('[title]')].map((e) => e.title).join())"
        return not browser.execute_script(_ANY_BIDI + text) and not browser.execute_script(
            _ANY_BIDI + titles
        )

    with Viewer(store_dir) as viewer:
        browser.get(viewer.url + "/")
        row = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr.row"))
        assert "invoice\\u202egnp.exe" in row.text
        assert no_control_left()
        row.click()
        detail = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, ".detail pre.output"))
        assert "safe \\u2066hidden\\u2069 end" in detail.text
        assert "abc\\u202edef" in browser.find_element(By.CSS_SELECTOR, ".detail pre.input").text
        assert "invoice\\u202egnp.exe" in browser.find_element(By.CSS_SELECTOR, "h1").text
        assert no_control_left()
