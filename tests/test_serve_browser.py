"""The page in a real headless browser (Debian's chromium and chromium-driver, selenium from PyPI):
a question's reply streams in, the candidate bars appear, and clicking a candidate continues the
reply from it. Skipped where no browser is installed.

The README's picture is made by this test on real models:
    SERVE_MODELS=out/experiment/seed1337 SERVE_SCREENSHOT=docs/serve.png python -m pytest tests/test_serve_browser.py
"""
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from serve import Server
from test_serve import write_model

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no browser: apt-get install chromium chromium-driver")
webdriver = pytest.importorskip("selenium.webdriver", reason="no selenium: pip install selenium")
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture()
def page(tmp_path):
    folder = Path(os.environ.get("SERVE_MODELS", ""))
    if not os.environ.get("SERVE_MODELS"):
        folder = tmp_path / "out"
        write_model(folder / "sft" / "ckpt.pt", "sft", 1)
        write_model(folder / "pretrain" / "ckpt.pt", "pretrain", 0)
        (folder / "sft" / "log.jsonl").write_text('{"step": 1, "loss": 5.0}\n{"step": 2, "loss": 4.0, "val_loss": 4.5}\n')
    server = Server(("127.0.0.1", 0), folder, "cpu", "float32")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,760"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
    yield browser
    browser.quit()
    server.shutdown()
    server.server_close()


def wait_for(condition, seconds: float = 30.0, every: float = 0.02):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("the page did not get there in time")


def test_a_reply_streams_in_with_its_candidate_bars_and_a_click_continues_it(page, tmp_path):
    real = bool(os.environ.get("SERVE_MODELS"))
    wait_for(lambda: page.find_elements(By.CSS_SELECTOR, "#model option"))
    if not real:  # a long reply, so that the test sees it grow
        page.find_element(By.ID, "max_tokens").clear()
        page.find_element(By.ID, "max_tokens").send_keys("1500")
    page.find_element(By.ID, "message").send_keys("台灣最高的山是哪座？")
    page.find_element(By.ID, "send").click()
    reply = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, ".turn.ai"))[0]
    lengths = set()  # the chips seen while the reply is written: several, if it streams
    while "working" in reply.get_attribute("class"):
        lengths.add(len(page.find_elements(By.CSS_SELECTOR, ".chip")))
        time.sleep(0.02)
    chips = page.find_elements(By.CSS_SELECTOR, ".chip")
    assert reply.text and chips and (real or len(lengths) >= 3)
    bars = page.find_elements(By.CSS_SELECTOR, ".cand .bar")
    assert len(bars) == 8 and float(bars[0].value_of_css_property("width").removesuffix("px")) > 0

    if real:  # the picture: a second turn, and the candidates for its first token
        page.find_element(By.ID, "message").send_keys("世界最高的山是哪座？")
        page.find_element(By.ID, "send").click()
        second = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, ".turn.ai")[1:])[0]
        wait_for(lambda: "working" not in second.get_attribute("class"))
        page.find_elements(By.CSS_SELECTOR, ".chip")[0].click()
        time.sleep(0.3)
        page.save_screenshot(os.environ.get("SERVE_SCREENSHOT", str(tmp_path / "page.png")))
        return
    chips[1].click()  # the 文字接龍 view of one token: click another candidate
    candidate = page.find_elements(By.CSS_SELECTOR, ".cand")[2]
    chosen = candidate.find_element(By.TAG_NAME, "span").text
    before = reply.text
    candidate.click()
    wait_for(lambda: "working" not in reply.get_attribute("class"))
    forced = page.find_elements(By.CSS_SELECTOR, ".chip")[1]
    assert "forced" in forced.get_attribute("class") and forced.text == chosen and reply.text != before
    page.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"


def test_side_by_side_asks_every_model_and_the_curves_are_drawn(page):
    if os.environ.get("SERVE_MODELS"):
        pytest.skip("SERVE_MODELS: the picture only")
    page.find_element(By.CSS_SELECTOR, "[data-tab=compare]").click()
    page.find_element(By.CSS_SELECTOR, "#compare-form button").click()
    cards = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, ".card"))
    wait_for(lambda: not page.find_elements(By.CSS_SELECTOR, ".card .working"))
    titles = [c.find_element(By.TAG_NAME, "h3").text for c in cards]
    assert len(cards) == 2 and titles[1].endswith("pretrain/ckpt.pt (text continuation)")
    assert all(c.find_element(By.CSS_SELECTOR, ".turn").text for c in cards)
    page.find_element(By.CSS_SELECTOR, "[data-tab=curves]").click()
    lines = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, ".curve polyline"))
    assert len(lines) == 2 and lines[0].get_attribute("points").count(",") == 2  # the 2 steps of the loss
