"""The attention explorer in a real browser: the system Chromium driven by Playwright, pages opened from file://.

Three fixtures written with ``write_explorer``: a 1,100-question telling split (6 map chunks of 200; one question
and one candidate hold HTML), a two-run comparison and a pointing split (candidates are boxes). Skipped when
playwright is not installed or no chromium binary is found. Set EXPLORER_SCREENSHOT=1 to save a screenshot of the
comparison page to /tmp/explorer_screenshot.png.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CHROMIUM, browser_api
from PIL import Image, ImageDraw

from vqa.report.explorer import encode_question_maps, write_explorer

sync_api = browser_api()

pytestmark = pytest.mark.browser

K, G, GRID = 4, 2, (7, 7)
TYPES = ("what", "where")
FAMILIES = ("colour", "count", "position", "shape")
OBJECTS = ("circle", "square", "triangle", "star", "ring", "bar")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
HOSTILE_Q = "<script>window.__pwned=1</script> Which <b>box</b>?"
HOSTILE_C = "<img src=x onerror=window.__pwned=2>"
SCREENSHOT = Path("/tmp/explorer_screenshot.png")


# ------------------------------------------------------------------------------------------------ fixtures (data)
def _image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    """A distinct synthetic picture: a two-colour gradient and a few shapes."""
    w, h = size
    top, bottom = rng.integers(20, 110, size=(2, 3))
    t = np.linspace(0, 1, h)[:, None, None]
    pixels = (top * (1 - t) + bottom * t).repeat(w, axis=1).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.integers(0, w - 40), rng.integers(0, h - 40)
        s = int(rng.integers(20, 60))
        fill = tuple(int(c) for c in rng.integers(60, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + s, y + s), fill=fill)
    img.save(path)


def _maps(rng: np.random.Generator, runs: int) -> list[Any]:
    """Per run, [K, G, H, W] attention (each map sums to 1): a bump at a random place over noise, encoded."""
    h, w = GRID
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(runs):
        att = np.empty((K, G, h, w))
        for k in range(K):
            for g in range(G):
                cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
                logits = -((yy - cy) ** 2 + (xx - cx) ** 2) / 2.5 + rng.normal(0, 0.4, (h, w))
                e = np.exp(logits - logits.max())
                att[k, g] = e / e.sum()
        out.append(encode_question_maps(att))
    return out


def build(out: Path, n: int, runs: int = 1, pointing: bool = False, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """Write an explorer of ``n`` questions into ``out``; its page and index (with the fields write_explorer adds)."""
    rng = np.random.default_rng(seed)
    src = out.parent / (out.name + "_src")
    src.mkdir(parents=True)
    sizes = [(320, 240), (240, 320), (400, 300), (300, 300)]
    images = {}
    for image_id in range(24):
        images[image_id] = src / f"{image_id}.png"
        _image(images[image_id], rng, sizes[image_id % len(sizes)])
    questions, maps = [], {}
    for i in range(n):
        qa_id = 1000 + i
        image_id = i % len(images)
        width, height = sizes[image_id % len(sizes)]
        obj, colour = OBJECTS[i % len(OBJECTS)], COLOURS[(i // 3) % len(COLOURS)]
        question = f"What colour is the {obj} next to the {colour} thing?"
        candidates = [str(c) for c in rng.choice(COLOURS, size=K, replace=False)]
        if i == 5:
            question, candidates[2] = HOSTILE_Q, HOSTILE_C
        boxes = None
        if pointing:
            corners = zip(rng.integers(0, width - 80, K), rng.integers(0, height - 80, K), strict=True)
            boxes = [[float(x), float(y), 60.0, 50.0] for x, y in corners]
            candidates = [str(int(b)) for b in rng.choice(np.arange(10, 99), size=K, replace=False)]
            question = f"Which box holds the {colour} {obj}?"
        answer = int(rng.integers(0, K))
        result = []
        for _ in range(runs):
            probs = rng.dirichlet(np.ones(K))
            chosen = int(probs.argmax())
            result.append({"probs": [float(p) for p in probs], "chosen": chosen, "correct": chosen == answer})
        questions.append({
            "qa_id": qa_id, "image_id": image_id, "type": TYPES[(i // 2) % 2], "family": FAMILIES[i % len(FAMILIES)],
            "question": question, "candidates": candidates, "answer_index": answer,
            "grounding": [[20.0, 30.0, 80.0, 60.0]] if i % 3 else [],
            "candidate_boxes": boxes, "runs": result,
        })  # fmt: skip
        maps[qa_id] = _maps(rng, runs)
    labels = [
        {"label": "attention <b>v1</b>", "variant": "attention", "checkpoint": "best.pt", "accuracy": 0.61},
        {"label": "no-attention & co", "variant": "mean_pool", "checkpoint": "b.pt", "accuracy": 0.52},
    ]
    task = "pointing" if pointing else "telling"
    index = {"title": "Explorer <i>test</i>", "summary": "synthetic fixture", "task": task, "grid": list(GRID),
             "glimpses": G, "runs": labels[:runs], "questions": questions}  # fmt: skip
    page = write_explorer(out, index, maps, images, chunk=200)
    return page, index


@pytest.fixture(scope="module")
def telling(tmp_path_factory):
    return build(tmp_path_factory.mktemp("explorer") / "telling", 1100)


@pytest.fixture(scope="module")
def compare(tmp_path_factory):
    return build(tmp_path_factory.mktemp("explorer") / "compare", 60, runs=2, seed=1)


@pytest.fixture(scope="module")
def pointing(tmp_path_factory):
    return build(tmp_path_factory.mktemp("explorer") / "pointing", 40, pointing=True, seed=2)


# ------------------------------------------------------------------------------------------------ fixtures (browser)
@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # file:// images taint a canvas (each file is its own origin) unless file access is allowed: the tests read
        # the canvas's pixels, the page itself never does
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--allow-file-access-from-files"])
        yield b
        b.close()


class Page:
    """A page with its console errors, page errors and map-chunk requests recorded."""

    def __init__(self, browser, url: str, width: int = 1400, height: int = 950):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.chunks: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", self._request)
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=15000)

    def _request(self, request) -> None:
        name = request.url.rsplit("/", 1)[-1]
        if name.startswith("maps_"):
            self.chunks.append(name)

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("() => ({...window.VQAExplorer.state})")

    def count(self) -> str:
        return self.page.inner_text("#count")

    def drawn(self, canvas: str = "#canvas") -> int:
        return int(self.page.get_attribute(canvas, "data-drawn"))

    def wait_drawn(self, qa_id: int | None = None, canvas: str = "#canvas") -> None:
        """Until the canvas shows ``qa_id`` (default: the current question) with its image and map."""
        qa = self.state()["qaId"] if qa_id is None else qa_id
        self.page.wait_for_function(
            "([sel, qa]) => { const c = document.querySelector(sel);"
            " return c && c.dataset.qa === String(qa) && c.dataset.complete === '1'; }",
            arg=[canvas, qa], timeout=10000)  # fmt: skip

    def snap(self, name: str, canvas: str = "#canvas") -> None:
        self.page.evaluate(
            "([sel, name]) => { const c = document.querySelector(sel); window.__snaps = window.__snaps || {};"
            " window.__snaps[name] = c.getContext('2d').getImageData(0, 0, c.width, c.height).data.slice(); }",
            [canvas, name])  # fmt: skip

    def diff(self, a: str, b: str) -> float:
        """Mean absolute difference (0..255) between two snapshots."""
        return self.page.evaluate(
            "([a, b]) => { const x = window.__snaps[a], y = window.__snaps[b];"
            " if (x.length !== y.length) return 255; let s = 0;"
            " for (let i = 0; i < x.length; i++) s += Math.abs(x[i] - y[i]); return s / x.length; }",
            [a, b])  # fmt: skip

    def snap_bare(self, name: str, canvas: str = "#canvas") -> None:
        """The current question's image alone, drawn the way the page draws it."""
        self.page.evaluate(
            "([sel, name]) => new Promise((done) => { const c = document.querySelector(sel);"
            " const id = String(window.VQAExplorer.state.qaId);"
            " const img = new Image(); img.onload = () => { const o = document.createElement('canvas');"
            " o.width = c.width; o.height = c.height; const x = o.getContext('2d');"
            " x.imageSmoothingEnabled = true; x.imageSmoothingQuality = 'high';"
            " x.drawImage(img, 0, 0, o.width, o.height);"
            " window.__snaps = window.__snaps || {};"
            " window.__snaps[name] = x.getImageData(0, 0, o.width, o.height).data.slice(); done(); };"
            " img.src = 'explorer/img/' + window.__imageOf[id] + '.jpg'; })",
            [canvas, name])  # fmt: skip

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def open_page(browser):
    pages: list[Page] = []

    def _open(explorer: tuple[Path, dict[str, Any]], **kw) -> Page:
        page = Page(browser, explorer[0].as_uri(), **kw)
        pages.append(page)
        return page

    yield _open
    for page in pages:
        page.close()


def _matches(q: dict[str, Any], query: str) -> bool:
    """The page's search: every whitespace-separated term in the question or a candidate, or the exact qa id."""
    hay = "\n".join([q["question"], *q["candidates"]]).lower()
    return query.strip() == str(q["qa_id"]) or all(t in hay for t in query.lower().split())


# ------------------------------------------------------------------------------------------------ tests
def test_loads_clean_and_lazily(open_page, telling):
    _, index = telling
    qs = index["questions"]
    assert max(q["chunk"] for q in qs) == 5
    p = open_page(telling)
    p.wait_drawn(qs[0]["qa_id"])
    assert p.errors == []
    assert p.count() == f"{len(qs)} of {len(qs)} shown"
    assert p.page.inner_text("#q-text") == qs[0]["question"]
    assert p.page.inner_text("#title") == "Explorer <i>test</i>"
    assert sorted(set(p.chunks)) == ["maps_000.js"]  # only the first question's chunk (its neighbour shares it)
    rows = p.page.locator("#list-inner .row").count()
    assert 0 < rows < 60  # the list renders the visible rows only

    last = qs[-1]
    p.page.fill("#f-search", str(last["qa_id"]))
    p.page.press("#f-search", "Enter")
    p.wait_drawn(last["qa_id"])
    assert p.count() == f"1 of {len(qs)} shown"
    assert sorted(set(p.chunks)) == ["maps_000.js", f"maps_{last['chunk']:03d}.js"]
    assert p.page.evaluate("window.VQAExplorer.requested") == [0, last["chunk"]]
    assert p.errors == []


def test_filters(open_page, telling):
    _, index = telling
    qs = index["questions"]
    p = open_page(telling)
    total = len(qs)

    p.page.select_option("#f-type", "where")
    assert p.count() == f"{sum(q['type'] == 'where' for q in qs)} of {total} shown"
    p.page.select_option("#f-result", "wrong")
    n = sum(q["type"] == "where" and not q["runs"][0]["correct"] for q in qs)
    assert 0 < n < total
    assert p.count() == f"{n} of {total} shown"
    p.page.select_option("#f-type", "")
    p.page.select_option("#f-result", "correct")
    assert p.count() == f"{sum(q['runs'][0]['correct'] for q in qs)} of {total} shown"
    p.page.select_option("#f-family", "shape")
    n = sum(q["runs"][0]["correct"] and q["family"] == "shape" for q in qs)
    assert p.count() == f"{n} of {total} shown"
    p.page.select_option("#f-result", "")
    p.page.select_option("#f-family", "")

    for query in ("triangle", "Star PURPLE", "green", "no-such-word"):
        p.page.fill("#f-search", query)
        p.page.press("#f-search", "Enter")
        expected = sum(_matches(q, query) for q in qs)
        assert p.count() == f"{expected} of {total} shown", query
        if expected:  # the first match is shown, and every listed row matches
            first = next(q for q in qs if _matches(q, query))
            p.wait_drawn(first["qa_id"])
            ids = p.page.evaluate("window.VQAExplorer.filteredIds()")
            assert ids == [q["qa_id"] for q in qs if _matches(q, query)]
    assert p.errors == []


def test_candidates_glimpses_opacity_keys(open_page, telling):
    _, index = telling
    qs = index["questions"]
    p = open_page(telling)
    p.page.evaluate("(m) => { window.__imageOf = m; }", {str(q["qa_id"]): q["image_id"] for q in qs})

    row = p.page.locator("#list-inner .row").nth(3)
    row.click()
    q = qs[3]
    p.wait_drawn(q["qa_id"])
    assert p.page.inner_text("#q-text") == q["question"]
    assert "selected" in (row.get_attribute("class") or "") or p.page.locator(".row.selected").count() == 1

    p.page.uncheck("#boxes")
    p.page.locator("#candidates .cand").nth(0).click()
    assert p.state()["candidate"] == 0
    p.snap("c1")
    before = p.drawn()
    p.page.keyboard.press("2")
    assert p.state()["candidate"] == 1
    assert p.drawn() > before
    p.snap("c2")
    assert p.diff("c1", "c2") > 1.0
    assert "selected" in p.page.locator("#candidates .cand").nth(1).get_attribute("class")

    p.page.select_option("#glimpse", "0")
    assert p.state()["glimpse"] == 0
    p.snap("g1")
    p.page.select_option("#glimpse", "mean")
    assert p.state()["glimpse"] == "mean"
    p.snap("mean")
    assert p.diff("g1", "mean") > 0.5
    assert p.diff("mean", "c2") == 0

    p.page.locator("#candidates .cand").nth(2).click()
    assert p.state()["candidate"] == 2
    p.page.fill("#opacity", "1")
    assert p.state()["opacity"] == 1
    p.snap("full")
    p.page.fill("#opacity", "0")
    assert p.state()["opacity"] == 0
    p.snap("none")
    p.snap_bare("bare")
    assert p.diff("none", "bare") < 0.5
    assert p.diff("full", "bare") > 10 * max(p.diff("none", "bare"), 0.2)

    p.page.locator("#canvas").click()
    p.page.keyboard.press("ArrowRight")
    p.wait_drawn(qs[4]["qa_id"])
    assert p.page.inner_text("#q-text") == qs[4]["question"]
    p.page.keyboard.press("ArrowLeft")
    p.wait_drawn(q["qa_id"])
    assert p.errors == []


def test_dataset_strings_are_text(open_page, telling):
    _, index = telling
    hostile = next(q for q in index["questions"] if q["question"] == HOSTILE_Q)
    p = open_page(telling)
    p.page.locator(f"#list-inner .row[data-qa='{hostile['qa_id']}']").click()
    p.wait_drawn(hostile["qa_id"])
    assert p.page.inner_text("#q-text") == HOSTILE_Q
    assert HOSTILE_C in p.page.inner_text("#candidates")
    assert "<script>" in p.page.inner_text("#list-inner")
    assert p.page.locator("#main img, #list img, #main b:text('box')").count() == 0
    p.page.keyboard.press("3")  # the hostile candidate's button, its map
    p.wait_drawn(hostile["qa_id"])
    assert p.page.evaluate("typeof window.__pwned") == "undefined"
    assert p.errors == []


def test_compare(open_page, compare):
    _, index = compare
    qs = index["questions"]
    p = open_page(compare, width=1500, height=980)
    assert p.page.locator("#views canvas").count() == 2
    labels = p.page.locator("#views figcaption").all_inner_texts()
    assert labels == ["attention <b>v1</b>", "no-attention & co"]
    assert "no-attention & co" in p.page.inner_text("#candidates")
    q = next(q for q in qs if q["grounding"] and q["runs"][0]["correct"] and not q["runs"][1]["correct"])
    p.page.locator(f"#list-inner .row[data-qa='{q['qa_id']}']").click()
    p.wait_drawn(q["qa_id"])
    p.wait_drawn(q["qa_id"], canvas="#canvas1")
    p.snap("a", "#canvas")
    p.snap("b", "#canvas1")
    assert p.diff("a", "b") > 1.0  # the two runs' maps differ
    chose = q["runs"][1]["chosen"]
    info = p.page.inner_text("#views .view.run1 .view-info")
    assert f"chose {q['candidates'][chose]}" in info
    p.page.select_option("#f-result", "disagree")
    n = sum(q["runs"][0]["correct"] != q["runs"][1]["correct"] for q in qs)
    assert p.count() == f"{n} of {len(qs)} shown"
    p.page.select_option("#f-result", "")
    p.page.locator(f"#list-inner .row[data-qa='{q['qa_id']}']").click()
    p.wait_drawn(q["qa_id"], canvas="#canvas1")
    assert p.errors == []
    if os.environ.get("EXPLORER_SCREENSHOT"):
        p.page.screenshot(path=str(SCREENSHOT))


def test_pointing(open_page, pointing):
    _, index = pointing
    q = index["questions"][0]
    p = open_page(pointing)
    p.wait_drawn(q["qa_id"])
    texts = p.page.locator("#candidates .cand-text").all_inner_texts()
    assert texts == [f"box {c}" for c in q["candidates"]]
    p.page.uncheck("#boxes")
    p.page.fill("#opacity", "0")
    k = p.state()["candidate"]
    x, y, _, h = q["candidate_boxes"][k]
    # the selected candidate's box, solid orange, on its left edge (scaled from original pixels)
    rgb = p.page.evaluate(
        "([x, y, W, H]) => { const c = document.querySelector('#canvas');"
        " const px = Math.round(x * c.width / W), py = Math.round(y * c.height / H);"
        " return Array.from(c.getContext('2d').getImageData(px, py, 1, 1).data).slice(0, 3); }",
        [x, y + h / 2, q["width"], q["height"]])  # fmt: skip
    assert rgb[0] > 200 and 100 < rgb[1] < 180 and rgb[2] < 80, rgb
    assert p.errors == []


def test_a_real_run_end_to_end(open_page, trained_run):
    """`make inspect` on a trained run writes an explorer that opens clean and draws each candidate's own map."""
    from vqa.config import load_config
    from vqa.report.inspect import run_report

    out = run_report(load_config(None, [*trained_run, "inspect.n=2"]))
    p = open_page((out["explorer"], {}))
    p.wait_drawn()
    assert p.errors == [] and p.count().endswith(f"of {out['explored']} shown")
    maps = p.page.evaluate("() => { const s = window.VQAExplorer.state; return [s.qaId, s.candidate]; }")
    p.snap("a")
    p.page.keyboard.press("1" if maps[1] != 0 else "2")
    p.wait_drawn()
    p.snap("b")
    assert p.diff("a", "b") > 0, "another candidate draws another attention map"
    assert p.errors == []


def test_a_decoder_run_names_each_words_map(open_page, trained_decoder):
    """A decoder run's explorer: the maps of the selected candidate are its words' (and its end's), named so."""
    from vqa.config import load_config
    from vqa.data.words import answer_steps, load_tokenizer
    from vqa.report.inspect import run_report

    cfg = load_config(None, [*trained_decoder, "inspect.n=2"])
    out = run_report(cfg)
    p = open_page((out["explorer"], {}))
    p.wait_drawn()
    assert p.errors == [] and p.page.inner_text("#glimpse-label") == "Word"
    tok = load_tokenizer(f"{cfg.run.dir}/tokenizer")
    for k in (0, 1):
        p.page.keyboard.press(str(k + 1))
        p.wait_drawn()
        q = p.page.evaluate("() => { const s = window.VQAExplorer.state; return s.qaId; }")
        candidate = p.page.evaluate(f"() => document.querySelectorAll('#candidates .cand-text')[{k}].textContent")
        words = answer_steps(tok, candidate, cfg.text.max_len)
        shown = p.page.evaluate("() => Array.from(document.querySelectorAll('#glimpse option'))"
                                ".filter(o => !o.hidden).map(o => o.textContent)")  # fmt: skip
        assert shown == [f"mean of {len(words)} words", *(f"word {i + 1}: \u201c{w}\u201d" for i, w in
                                                           enumerate(words))], (q, shown)  # fmt: skip
        snaps = []
        for i in range(len(words)):
            p.page.select_option("#glimpse", str(i))
            p.wait_drawn()
            assert f"word {i + 1}: \u201c{words[i]}\u201d" in p.page.inner_text(".info-map")
            p.snap(f"{k}-{i}")
            snaps.append(f"{k}-{i}")
        assert any(p.diff(snaps[0], s) > 0 for s in snaps[1:]), "each word has its own map"
        p.page.select_option("#glimpse", "mean")
    assert p.errors == []


def test_a_decoder_run_shows_its_own_answers_and_their_words_maps(open_page, trained_decoder):
    """The decoder's own answers sit beside the candidates: the ones `Predictor.generate` gives for the same image
    and question, with its probabilities; picking one names its words in the Word selector and draws one map each."""
    from vqa.config import load_config
    from vqa.predictor import Predictor
    from vqa.report.inspect import run_report
    from vqa.run import Run

    cfg = load_config(None, [*trained_decoder, "inspect.n=2"])
    out = run_report(cfg)
    p = open_page((out["explorer"], {}))
    p.wait_drawn()
    qa_id = p.state()["qaId"]
    q = next(q for q in Run(cfg).dataset.split(cfg.inspect.split) if q.qa_id == qa_id)
    expected = Predictor.from_config(cfg).generate(Run(cfg).dataset.image_path(q.image_id), q.question,
                                                        cfg.eval.topk)  # fmt: skip
    assert p.page.is_visible("#generated-box")
    shown = p.page.evaluate("() => Array.from(document.querySelectorAll('#generated .cand')).map(b =>"
                            " [b.querySelector('.cand-text').textContent, b.querySelector('.pct').textContent])")
    # the page stores 4 decimals and shows 1 (toFixed): a rounding apart at most (0.027499 shows 2.8%, not 2.7%)
    assert [t for t, _ in shown] == [g.answer for g in expected]
    percents = [float(p[:-1]) for _, p in shown]
    assert all(abs(p - 100 * g.probability) <= 0.1 for p, g in zip(percents, expected, strict=True)), shown
    n_cand = len(q.candidates)
    for j, g in enumerate(expected[:2]):
        p.page.locator("#generated .cand").nth(j).click()
        p.wait_drawn()
        assert p.state()["candidate"] == n_cand + j
        assert p.page.inner_text(".info-cand") == f"written: {g.answer}"
        names = p.page.evaluate("() => Array.from(document.querySelectorAll('#glimpse option'))"
                                ".filter(o => !o.hidden).map(o => o.textContent)")  # fmt: skip
        assert names == [f"mean of {len(g.words)} words", *(f"word {i + 1}: \u201c{w}\u201d" for i, w in
                                                            enumerate(g.words))]  # fmt: skip
        for i in range(len(g.words)):
            p.page.select_option("#glimpse", str(i))
            p.wait_drawn()
            assert "no map" not in p.page.inner_text(".info-map")
            p.snap(f"g{j}-{i}")
        assert any(p.diff(f"g{j}-0", f"g{j}-{i}") > 0 for i in range(1, len(g.words))), "each word has its own map"
        p.page.select_option("#glimpse", "mean")
    p.page.screenshot(path=str(SCREENSHOT.with_name("explorer_generated.png")), full_page=True)
    assert p.errors == []


def test_a_real_run_shows_its_calibrated_probabilities(open_page, trained_run, tmp_path):
    """The explorer's percentages are the model's scores over the run's fitted temperature (best/meta.json), the
    same that `Predictor` gives: a copy of the trained run with a sharp temperature shows sharper numbers."""
    import json
    import shutil

    from vqa.config import load_config
    from vqa.predictor import Predictor
    from vqa.report.inspect import run_report
    from vqa.run import Run

    source = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2])
    for part in ("checkpoints", "tokenizer"):
        shutil.copytree(source / part, tmp_path / part)
    meta_file = tmp_path / "checkpoints" / "best" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["calibration"] = {**meta.get("calibration", {}), "temperature": 0.2}
    meta_file.write_text(json.dumps(meta))
    cfg = load_config(None, [*(o for o in trained_run if not o.startswith("run.dir=")), f"run.dir={tmp_path}",
                             f"features.dir={source / 'features'}", "inspect.n=1"])  # fmt: skip
    p = open_page((run_report(cfg)["explorer"], {}))
    p.wait_drawn()
    qa_id = p.state()["qaId"]
    q = next(q for q in Run(cfg).dataset.split(cfg.inspect.split) if q.qa_id == qa_id)
    predictor = Predictor.from_config(cfg)
    assert predictor.temperature == 0.2
    calibrated = predictor.predict(Run(cfg).dataset.image_path(q.image_id), q.question, q.candidates).probabilities
    raw = np.exp(np.log(calibrated) * 0.2)
    raw /= raw.sum()
    assert np.abs(calibrated - raw).max() > 0.02, "the temperature must change what is shown for the test to tell"
    shown = p.page.evaluate("() => Array.from(document.querySelectorAll('#candidates .pct')).map(e => e.textContent)")
    # the page stores 4 decimals and shows 1 (toFixed): equal to 0.1 percentage point
    assert all(t.endswith("%") for t in shown) and len(shown) == len(calibrated), shown
    assert np.abs(np.array([float(t[:-1]) for t in shown]) - 100 * calibrated).max() <= 0.1, (shown, calibrated, raw)
    assert p.errors == []
