"""`make serve`: the live page in the system Chromium against real trained runs, and its API's refusals.

A server per run starts in a thread (uvicorn on a free localhost port); answers are checked against
``vqa.Predictor`` on the same file, question and choices.
"""

from __future__ import annotations

import glob
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, REPO, browser_api
from PIL import Image

uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")

from vqa.config import load_config  # noqa: E402 (after the skip: vqa.serve needs the extra)
from vqa.predictor import Predictor  # noqa: E402
from vqa.report.serve import TMP_PREFIX, Answerer, make_app  # noqa: E402
from vqa.run import Run  # noqa: E402

QUESTION = "What color is the circle?"
CHOICES = ["Red.", "Blue.", "Green.", "White."]
SHOT = Path("/tmp/serve_screenshot.png")


# ------------------------------------------------------------------------------------------------ fixtures
def start(overrides: list[str]) -> Any:
    """A server for the run of ``overrides`` on a free port: (base url, its Run, its Predictor, stop())."""
    cfg = load_config(None, overrides)
    run = Run(cfg)
    answerer = Answerer(Predictor.from_config(run), run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(answerer), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", run, answerer.predictor, stop


@pytest.fixture(scope="module")
def telling(trained_run):
    url, run, predictor, stop = start(trained_run)
    yield url, run, predictor
    stop()


@pytest.fixture(scope="module")
def decoder(trained_decoder):
    url, run, predictor, stop = start(trained_decoder)
    yield url, run, predictor
    stop()


@pytest.fixture(scope="module")
def pointing(trained_run, tmp_path_factory):
    """A 1-epoch pointing run on the tiny world's pointing file and ``trained_run``'s feature store."""
    from accelerate import Accelerator

    from vqa.training import train

    store = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2]) / "features"
    telling = Path(next(o for o in trained_run if o.startswith("data.annotations=")).partition("=")[2])
    overrides = [*(o for o in trained_run if not o.startswith(("run.dir=", "data.annotations="))),
                 f"data.annotations={telling.with_name('dataset_v7w_pointing.json')}", "data.task=pointing",
                 f"run.dir={tmp_path_factory.mktemp('pointing')}", f"features.dir={store}"]  # fmt: skip
    train(load_config(None, overrides), Accelerator(cpu=True))
    url, run, predictor, stop = start(overrides)
    yield url, run, predictor
    stop()


def post(url: str, fields: list[tuple[str, str]], file: Path | None = None) -> tuple[int, dict[str, Any]]:
    """A multipart POST to /api/ask as the page sends it: (status, JSON)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields]
    if file is not None:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="upload"\r\n\r\n'
        parts.append(head.encode() + file.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}/api/ask", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def image_of(run: Run) -> Path:
    return run.dataset.image_path(run.dataset.split("test")[0].image_id)


# ------------------------------------------------------------------------------------------------ the API
def test_an_answer_is_the_predictors_and_the_upload_is_gone(telling) -> None:
    url, run, predictor = telling
    image = image_of(run)
    status, out = post(url, [("question", QUESTION), *(("choice", c) for c in CHOICES)], image)
    assert status == 200, out
    expected = predictor.predict(image, QUESTION, CHOICES)
    assert out["best"] == expected.best
    assert out["probabilities"] == pytest.approx(expected.probabilities.tolist(), abs=1e-4)
    assert out["order"] == sorted(range(4), key=lambda k: (-expected.scores[k], k))
    assert len(out["maps"]) == 4 and out["generated"] == [] and out["words"] is None
    assert glob.glob(f"{tempfile.gettempdir()}/{TMP_PREFIX}*") == [], "the upload's folder is deleted"


@pytest.mark.parametrize(("fields", "upload", "message"), [
    ([("question", " "), ("choice", "a"), ("choice", "b")], "image", "type a question"),
    ([("question", "Why?"), ("choice", "a"), ("choice", " ")], "image", "give at least two candidate answers"),
    ([("question", "Why?"), *(("choice", str(i)) for i in range(5))], "image", "at most 4"),
    ([("question", "Why?"), ("choice", "a"), ("choice", "b")], None, "pick an image first"),
    ([("question", "Why?"), ("choice", "a"), ("choice", "b")], "text", "cannot be used: not an image"),
    ([("question", "Why?"), ("choice", "a"), ("choice", "b")], "huge", "the uploaded image cannot be used"),
    ([("question", "Why?"), ("choice", "a"), ("choice", "b"), ("sample", "99999")], None, "no sample image"),
])  # fmt: skip
def test_bad_input_is_one_line_never_a_trace(telling, tmp_path: Path, fields, upload, message) -> None:
    url, run, _ = telling
    files = {"image": image_of(run), "text": Path(__file__), "huge": tmp_path / "huge.png", None: None}
    if upload == "huge":  # more pixels than features.max_pixels: refused from the header, never decoded
        Image.new("1", (9500, 9500)).save(files["huge"])
    status, out = post(url, fields, files[upload])
    assert status == 400 and message in out["error"], out
    assert "Traceback" not in out["error"] and TMP_PREFIX not in out["error"] and "/" not in out["error"]


def test_only_the_page_and_the_runs_samples_are_served(telling) -> None:
    url, run, _ = telling
    info = json.loads(urllib.request.urlopen(f"{url}/api/info", timeout=10).read())
    assert info["task"] == "telling" and info["samples"]
    with urllib.request.urlopen(url + info["samples"][0]["url"], timeout=10) as r:
        assert r.read() == run.dataset.image_path(info["samples"][0]["id"]).read_bytes()
    for path in ("/sample/99999", "/upload", "/../README.md", "/serve.py", "/api/ask"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, timeout=10)
        assert e.value.code in (404, 405), path


@pytest.mark.slow
def test_the_entry_point_listens_on_localhost_and_refuses_a_busy_port(trained_run) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, "pipelines/serve.py", *trained_run, "--port", str(port)], cwd=REPO,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in p.stderr and "Traceback" not in p.stderr
    server = subprocess.Popen([sys.executable, "pipelines/serve.py", *trained_run, "--port", str(port)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lines = [server.stdout.readline() for _ in range(2)]
        assert lines[1].strip().startswith(f"open http://127.0.0.1:{port}/"), lines
        for _ in range(100):  # the address is printed just before uvicorn binds it
            try:
                info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=5).read())
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        assert info["task"] == "telling"
    finally:
        server.terminate()
        server.wait(30)


def test_a_pointing_run_takes_boxes_and_refuses_one_outside_the_image(pointing) -> None:
    url, run, predictor = pointing
    image = image_of(run)
    boxes = [(10.0, 10.0, 40.0, 30.0), (60.0, 50.0, 30.0, 30.0)]
    status, out = post(url, [("question", "Which object is red?"), *(("choice", ",".join(map(str, b))) for b in boxes)],
                       image)  # fmt: skip
    assert status == 200, out
    assert out["probabilities"] == pytest.approx(
        predictor.predict(image, "Which object is red?", boxes).probabilities.tolist(), abs=1e-4)
    refused = [([("choice", "10,10,40,30"), ("choice", "-90,-90,20,20")], "nothing inside"),
               ([("choice", "10,10,40,30"), ("choice", "1,2,3")], "x,y,width,height"),
               ([("choice", "10,10,40,30")], "at least two boxes")]  # fmt: skip
    for fields, message in refused:
        status, out = post(url, [("question", "Which object is red?"), *fields], image)
        assert status == 400 and message in out["error"], out


# ------------------------------------------------------------------------------------------------ in Chromium
@pytest.fixture(scope="module")
def browser():
    sync_api = browser_api()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "400" not in m.text else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page, errors


def ask(page, question: str, choices: list[str], n: int) -> dict[str, Any]:
    """Type, press Ask, wait for the n-th answer; the JSON the page received."""
    page.fill("#question", question)
    for i, c in enumerate([*choices, "", "", "", ""][:4]):
        page.locator(".choice").nth(i).fill(c)
    with page.expect_response("**/api/ask") as response:
        page.click("#ask")
    page.wait_for_function(f"() => document.querySelector('#canvas').dataset.result === '{n}'")
    return response.value.json()


def take_first_sample(page) -> int:
    """Click the first of the run's sample images and wait until it is drawn; its image id."""
    page.locator("#samples img").first.click()
    page.wait_for_function("() => Number(document.querySelector('#canvas').dataset.drawn) > 1")
    return int(page.locator("#samples img").first.get_attribute("data-id"))


def pixels(page) -> list[int]:
    return page.evaluate("() => { const c = document.querySelector('#canvas');"
                         " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }")


@pytest.mark.browser
def test_upload_ask_and_see_each_candidates_map(browser, telling) -> None:
    url, run, predictor = telling
    page, errors = open_page(browser, url)
    image = image_of(run)
    page.set_input_files("#file", str(image))
    page.wait_for_function("() => Number(document.querySelector('#canvas').dataset.drawn) > 1")
    for n, question in enumerate([QUESTION, "Where is the square?"], 1):  # two requests in a row
        out = ask(page, question, CHOICES, n)
        expected = predictor.predict(image, question, CHOICES)
        assert out["probabilities"] == pytest.approx(expected.probabilities.tolist(), abs=1e-4)
        ranked = page.locator("#ranked .cand-text").all_inner_texts()
        assert ranked == [CHOICES[k] for k in sorted(range(4), key=lambda k: (-expected.scores[k], k))]
        assert page.inner_text("#ranked .cand .chosen") == "● chosen"
        assert page.locator("#ranked .cand").first.inner_text().startswith("#1")
    shots = []
    for k in range(4):
        page.locator(f"#ranked .cand[data-k='{k}']").click()
        shots.append(pixels(page))
    assert all(shots[0] != s for s in shots[1:]), "each candidate draws its own map"
    page.fill("#question", "")
    page.click("#ask")
    page.wait_for_function("() => document.querySelector('#canvas').dataset.result === '3'")
    assert page.inner_text("#message") == "type a question" and page.is_hidden("#results")
    page.set_input_files("#file", str(Path(__file__)))  # not an image: the server says so on the page
    ask(page, QUESTION, CHOICES, 4)
    assert "not an image" in page.inner_text("#message")
    assert errors == []


@pytest.mark.browser
def test_a_decoder_run_shows_its_own_answers_word_by_word(browser, decoder) -> None:
    url, run, predictor = decoder
    page, errors = open_page(browser, url)
    sample = take_first_sample(page)
    out = ask(page, QUESTION, CHOICES[:2], 1)
    image = run.dataset.image_path(sample)
    assert out["probabilities"] == pytest.approx(predictor.predict(image, QUESTION, CHOICES[:2]).probabilities.tolist(),
                                                 abs=1e-4)  # fmt: skip
    written = predictor.generate(image, QUESTION, 5)
    assert page.locator("#generated .cand-text").all_inner_texts() == [g.answer for g in written]
    page.locator("#generated .cand").first.click()
    names = page.locator("#glimpse option").all_inner_texts()
    assert page.inner_text("#glimpse-label") == "Word"
    assert names == [f"mean of {len(written[0].words)} words",
                     *(f"word {i + 1}: \u201c{w}\u201d" for i, w in enumerate(written[0].words))]  # fmt: skip
    page.select_option("#glimpse", "0")
    assert "word 1" in page.inner_text("#map-info")
    page.screenshot(path=str(SHOT), full_page=True)
    assert errors == []


@pytest.mark.browser
def test_boxes_drawn_on_the_image_are_the_choices(browser, pointing) -> None:
    url, run, predictor = pointing
    page, errors = open_page(browser, url)
    sample = take_first_sample(page)
    assert page.is_hidden("#choices-text") and page.is_visible("#choices-boxes")
    box = page.locator("#canvas").bounding_box()
    for (x0, y0, x1, y1) in ((0.1, 0.1, 0.4, 0.35), (0.5, 0.5, 0.8, 0.9)):  # two drags, in shares of the canvas
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=4)
        page.mouse.up()
    drawn = page.evaluate("() => window.VQAServe.state.boxes")
    assert len(drawn) == 2 and page.locator("#box-list li").count() == 2
    page.fill("#question", "Which object is red?")
    with page.expect_response("**/api/ask") as response:
        page.click("#ask")
    page.wait_for_function("() => document.querySelector('#canvas').dataset.result === '1'")
    expected = predictor.predict(run.dataset.image_path(sample), "Which object is red?", [tuple(b) for b in drawn])
    assert response.value.json()["probabilities"] == pytest.approx(expected.probabilities.tolist(), abs=1e-4)
    assert page.locator("#ranked .cand-text").all_inner_texts()[0] == f"box {expected.best + 1}"
    assert errors == []
