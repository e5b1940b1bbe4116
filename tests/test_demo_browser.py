"""``ser-dist demo`` in a real headless browser: Debian's chromium driven by selenium through chromedriver.

One server (the real entry point, ``python -m ser_dist.cli demo``) on the tiny trained run and one browser for
the module. A clip uploaded through the page's file input gives ``ser-dist predict --json``'s label and
probabilities; a long file draws its timeline; an unreadable file, one over --max-seconds and one over
--max-file-mb are readable messages, and the page goes on answering. Nothing reaches past 127.0.0.1.

The screenshot of the long file's page goes to the test's tmp folder; with SER_DIST_SAVE_SCREENSHOT=1 it is also
copied to docs/images/demo.png (README's picture is made that way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, free_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytest.importorskip("gradio", reason="the demo needs gradio: pip install '.[demo]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium: pip install '.[test]'")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="no /usr/bin/chromium or /usr/bin/chromedriver (Debian's chromium and chromium-driver; launch/setup.sh installs them)",
)
MAX_SECONDS, MAX_FILE_MB = 30, 2
WAIT = 60  # seconds for a page or a prediction to show up


@pytest.fixture(scope="module")
def clips(demo_corpus, tmp_path_factory) -> dict[str, Path]:
    """A demo clip (and a copy under another name), a 20 s and a 40 s recording, a broken WAV, a 3 MB file."""
    folder = tmp_path_factory.mktemp("demo_clips")
    source = sorted((demo_corpus / "Sad").glob("*.wav"))[0]
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in sorted(demo_corpus.rglob("*.wav"))])
    out = {"clip": folder / source.name, "again": folder / "the_same_clip_again.wav"}
    shutil.copy(source, out["clip"])
    shutil.copy(source, out["again"])
    for seconds in (20, 40):
        out[f"long{seconds}"] = folder / f"recording_{seconds}s.wav"
        sf.write(str(out[f"long{seconds}"]), audio[: seconds * 16000], 16000)
    out["broken"] = folder / "broken.wav"
    out["broken"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out["huge"] = folder / "huge.wav"
    out["huge"].write_bytes(b"RIFF" + bytes(3 * 2**20))
    return out


@pytest.fixture(scope="module")
def server(deploy_run, tmp_path_factory):
    """``ser-dist demo RUN`` on a free port; (url, run dir, gradio's upload folder) once it prints its URL and answers."""
    import httpx

    run, _ = deploy_run
    folder = tmp_path_factory.mktemp("demo_server")
    port = free_port()
    log = open(folder / "server.log", "w+")
    args = ["demo", str(run), "--port", str(port), "--max-seconds", str(MAX_SECONDS), "--max-file-mb", str(MAX_FILE_MB)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(folder / "uploads")}
    process = subprocess.Popen([sys.executable, "-m", "ser_dist.cli", *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        text = (folder / "server.log").read_text()
        if f"at {url}" in text:
            break
        assert process.poll() is None and time.monotonic() < deadline, f"ser-dist demo did not start:\n{text[-3000:]}"
        time.sleep(0.2)
    assert httpx.get(url, timeout=30).status_code == 200
    yield url, run, folder / "uploads"
    process.terminate()
    process.wait(timeout=30)
    log.close()
    assert "Traceback" not in (folder / "server.log").read_text()


@pytest.fixture(scope="module")
def browser():
    """Headless chromium through /usr/bin/chromedriver, given explicitly: Selenium Manager (which downloads
    drivers and browsers) must never run, so it is made to fail the test if it is asked."""
    from selenium.webdriver.common import selenium_manager

    def never(*args, **kwargs):
        raise AssertionError("Selenium Manager was asked for a driver: it would try to download one")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # a fake microphone (a beep) that needs no permission prompt
    fake_microphone = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600", *fake_microphone):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selenium_manager.SeleniumManager, "binary_paths", never)
        patch.setenv("SE_OFFLINE", "true")  # and were it asked anyway, offline
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(server, browser):
    """The demo page, loaded once: its header, the empty status, the file input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    browser.get(url)
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"))
    return browser


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.execute_script("return arguments[0].innerText", driver.find_element(By.ID, element_id))


def file_input(driver):
    """The audio box's file input: after an upload the box is a player, whose Clear button brings the input back."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for button in driver.find_elements(By.CSS_SELECTOR, "#clip button[aria-label=Clear]"):
        driver.execute_script("arguments[0].click()", button)
    return WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"))[0]


def upload(driver, path: Path) -> str:
    """Put ``path`` into the page's file input as a user's upload does; the status line once it names the file."""
    from selenium.webdriver.support.ui import WebDriverWait

    file_input(driver).send_keys(str(path))

    def done(d):
        status = text_of(d, "status")
        return status if path.name in status and "processing" not in status else None

    return " ".join(WebDriverWait(driver, WAIT).until(done).split())


def page_json(driver, name: str) -> dict:
    """The page's "numbers" block for the file ``name`` (its JSON view's text, parsed)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def parsed(d):
        text = text_of(d, "prediction-json")
        start = text.find("{")
        value = json.loads(text[start:]) if start >= 0 else None
        return value if value and value.get("file") == name else None

    return WebDriverWait(driver, WAIT).until(parsed)


def predict_json(capsys, run: Path, path: Path) -> dict:
    """``ser-dist predict RUN FILE --json`` (in this process)."""
    from ser_dist.cli import main

    capsys.readouterr()
    main(["predict", str(run), str(path), "--json", "--no-progress"])
    return json.loads(capsys.readouterr().out)[0]


def assert_same_prediction(shown: dict, expected: dict) -> None:
    assert shown["label"] == expected["label"]
    assert set(shown["probabilities"]) == set(expected["probabilities"])
    for label, p in expected["probabilities"].items():
        assert shown["probabilities"][label] == pytest.approx(p, abs=1e-4), label


def test_page_loads_with_the_models_header_and_a_clip_gives_predicts_numbers(page, server, clips, capsys):
    url, run, _ = server
    header = " ".join(text_of(page, "header").split())
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    labels = json.loads((run / "model" / "ser_dist.json").read_text())["labels"]
    assert "Speech emotion recognition: bilstm_mfcc_ce" in header
    assert f"Classes ({len(labels)}): {', '.join(labels)}." in header
    assert "Trained on a local corpus (folder per class: corpus)" in header
    assert f"UA {100 * metrics['unweighted_accuracy']:.2f} %" in header and f"up to {MAX_SECONDS} s" in header

    status = upload(page, clips["clip"])
    expected = predict_json(capsys, run, clips["clip"])
    shown = page_json(page, clips["clip"].name)
    assert_same_prediction(shown, expected)
    assert f"{clips['clip'].name} (3." in status and f"{expected['label']} ({expected['confidence']:.3f})" in status
    # the bars: every class with its percentage, the top one first and as the heading
    bars = text_of(page, "probabilities").split("\n")
    assert bars[1] == expected["label"]
    for label, p in expected["probabilities"].items():
        assert f"{round(100 * p)}%" in bars[bars.index(label, 2) + 1], (label, bars)
    assert not [e for e in page.find_elements("id", "timeline") if e.is_displayed()]  # one window: no timeline


def test_a_recording_from_the_microphone_is_predicted(page, server, capsys):
    """Chromium's fake microphone through the page's Record and Stop buttons: the clip the server received gives
    the numbers the page shows when ``ser-dist predict`` reads it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, run, uploads = server

    def button(text: str):
        found = [b for b in page.find_elements(By.CSS_SELECTOR, "#clip button") if b.text == text or b.get_attribute("aria-label") == text]
        assert found, (text, [b.text or b.get_attribute("aria-label") for b in page.find_elements(By.CSS_SELECTOR, "#clip button")])
        page.execute_script("arguments[0].click()", found[0])

    file_input(page)  # an empty audio box
    button("Record audio")
    WebDriverWait(page, WAIT).until(lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "#clip button") if b.text == "Record"])
    button("Record")
    time.sleep(2.5)
    button("Stop")

    def done(d):
        status = " ".join(text_of(d, "status").split())
        return status if status.startswith("audio.wav (") and "processing" not in status else None

    status = WebDriverWait(page, WAIT).until(done)
    recorded = max(uploads.rglob("audio.wav"), key=lambda p: p.stat().st_mtime)
    assert 2.0 < sf.info(str(recorded)).duration < 10.0, status
    expected = predict_json(capsys, run, recorded)
    assert_same_prediction(page_json(page, "audio.wav"), expected)
    button("Upload file")  # back to uploads for the next tests


def test_a_long_recording_shows_its_timeline_and_segments(page, server, clips, capsys, tmp_path):
    from selenium.webdriver.common.by import By

    _, run, _ = server
    path = clips["long20"]
    status = upload(page, path)
    expected = predict_json(capsys, run, path)
    shown = page_json(page, path.name)
    assert_same_prediction(shown, expected)
    assert len(shown["windows"]) == len(expected["windows"]) == 10  # 20 s in the model's 2 s windows
    for got, want in zip(shown["windows"], expected["windows"]):
        assert (got["start"], got["end"], got["label"]) == (want["start"], want["end"], want["label"])
        assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-4)
    assert "the mean of 10 windows of 2 s" in status
    timeline = page.find_element(By.ID, "timeline")
    assert timeline.is_displayed() and timeline.find_elements(By.CSS_SELECTOR, "img, svg, canvas")
    cells = text_of(page, "segments").split()  # "Segments", the 4 headings' words, then each row's 4 cells
    cells = cells[cells.index("confidence") + 1 :]
    rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
    assert len(rows) == 10, cells
    for row, want in zip(rows, expected["windows"]):
        assert [float(row[0]), float(row[1]), row[2]] == [want["start"], want["end"], want["label"]]
        assert float(row[3]) == pytest.approx(want["confidence"], abs=1e-4)

    height = page.execute_script("return document.documentElement.scrollHeight")
    page.set_window_size(1280, min(max(height, 900), 4000))
    page.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "demo.png"
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
    if os.environ.get("SER_DIST_SAVE_SCREENSHOT") == "1":
        target = ROOT / "docs" / "images" / "demo.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
        print(f"screenshot copied to {target}")
    page.set_window_size(1280, 1600)


def test_an_unreadable_upload_is_a_readable_message_and_the_page_goes_on(page, server, clips, capsys):
    status = upload(page, clips["broken"])
    assert status.startswith("Could not use broken.wav: truncated/corrupt:"), status
    body = page.find_element("tag name", "body").text
    assert "Traceback" not in body and 'File "' not in body
    assert page_json_is_empty(page)
    _, run, _ = server
    upload(page, clips["again"])  # the next clip is predicted as usual
    assert_same_prediction(page_json(page, clips["again"].name), predict_json(capsys, run, clips["again"]))


def page_json_is_empty(driver) -> bool:
    return "{" not in text_of(driver, "prediction-json").replace("{ }", "")


def test_a_clip_over_max_seconds_is_refused_by_its_header(page, clips):
    status = upload(page, clips["long40"])
    for fragment in (
        f"{clips['long40'].name} is 40.0 s long; this demo takes clips up to {MAX_SECONDS} s (ser-dist demo --max-seconds).",
        "For a longer recording use ser-dist predict MODEL FILE",
    ):
        assert fragment in status, status
    assert page_json_is_empty(page)


def test_an_upload_over_max_file_mb_is_refused_by_the_page_and_the_server(page, server, clips):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    file_input(page).send_keys(str(clips["huge"]))
    toast = WebDriverWait(page, WAIT).until(lambda d: "exceed the maximum allowed size" in d.find_element(By.TAG_NAME, "body").text)
    assert toast
    assert f'maximum allowed size of {MAX_FILE_MB:.1f} Mb: "huge.wav"' in page.find_element(By.TAG_NAME, "body").text
    url, _, _ = server  # a client that skips the page's check is refused by the server, before anything is stored
    with open(clips["huge"], "rb") as f:
        response = httpx.post(f"{url}/gradio_api/upload", files={"files": ("huge.wav", f, "audio/wav")}, timeout=60)
    assert response.status_code == 413, response.text[:300]


def test_the_page_loads_nothing_from_outside(page, server):
    url, _, _ = server
    requested = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert requested and all(name.startswith(url + "/") for name in requested), [n for n in requested if not n.startswith(url)]
