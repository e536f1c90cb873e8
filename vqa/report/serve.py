"""`make serve`: a local page where a person drops in a photo, asks, and sees where the model looked for each
answer (``pipelines/serve.py`` starts it).

Why a small Starlette app and not Gradio: the page must draw attention exactly as the explorer does (the same
colour map, opacity, glimpses and per-word maps), and the explorer's drawing code (``maps.js``) is plain browser
JavaScript that a Gradio component would have to wrap; Starlette + uvicorn are three small packages (the
``serve`` extra), against Gradio's ~40, and the app is one screen of Python that a test can start in a thread.

What it promises: the model loads once (``vqa.Predictor``) and answers one request at a time; an upload is read
into a temporary folder, answered and deleted, and is never served back (the page draws the user's own copy); the
run's test images are offered as samples through the dataset's own, folder-confined paths; every input error is a
message on the page, never a stack trace; it listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..common.errors import VQAError, summary
from ..features.images import load_image
from ..predictor import Predictor
from ..run import Run
from .explorer import encode_map, encode_question_maps

MAX_UPLOAD = 64 * 1024 * 1024  # bytes: a larger upload is refused before it is decoded
MAX_CHOICES = 4  # as Visual7W's multiple choice
SAMPLES = 24  # the run's test images offered on the page
STATIC = {"/": ("serve.html", "text/html"), "/serve.js": ("serve.js", "text/javascript"),
          "/serve.css": ("serve.css", "text/css"), "/maps.js": ("maps.js", "text/javascript")}  # fmt: skip
UPLOAD_NAME = "the uploaded image"
TMP_PREFIX = "vqa-serve-"  # the temporary folder of one request: its path never reaches the page


class Answerer:
    """A loaded run that answers one question at a time (a lock: the model and its threads are shared)."""

    def __init__(self, predictor: Predictor, run: Run) -> None:
        self.predictor, self.run, self.lock = predictor, run, threading.Lock()
        self.task = predictor.task
        self.samples = sample_images(run, SAMPLES)

    def info(self) -> dict[str, Any]:
        spec = self.predictor.model.spec
        return {"run": str(self.run.dir), "task": self.task.name, "variant": spec.variant, "head": spec.head,
                "grid": list(spec.grid[1:]), "max_choices": MAX_CHOICES,
                "samples": [{"id": i, "url": f"/sample/{i}"} for i in self.samples]}  # fmt: skip

    def warm_up(self) -> None:
        """One answer before the first person asks: the first forward pass builds the CPU kernels (seconds)."""
        if self.samples:
            example = [self.task.parse_choice(c) for c in self.task.example_choices]
            self.ask(self.run.dataset.image_path(self.samples[0]), "What is this?", example)

    def ask(self, image: Path, question: str, choices: list[Any]) -> dict[str, Any]:
        """The ranking, probabilities and maps (and a decoder's own answers) of ``choices`` for ``image``."""
        start = time.perf_counter()
        with self.lock:
            r = self.predictor.predict(image, question, choices)
            written = self.predictor.generate(image, question, k=5) if r.words is not None else []
        order = sorted(range(len(choices)), key=lambda k: (-float(r.scores[k]), k))
        return {"question": question, "choices": [c if isinstance(c, str) else list(c) for c in choices],
                "probabilities": [float(p) for p in r.probabilities], "scores": [float(s) for s in r.scores],
                "best": int(r.best), "order": order, "maps": encode_question_maps(r.attention_glimpses),
                "words": r.words,
                "generated": [{"answer": g.answer, "p": g.probability, "words": g.words,
                               "maps": [encode_map(m) for m in g.attention_words]} for g in written],
                "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip


def sample_images(run: Run, n: int) -> list[int]:
    """The first ``n`` test images that have a file (by image id): what the page offers as samples."""
    ids = sorted({q.image_id for q in run.dataset.split("test")})
    return [i for i in ids if run.dataset.image_path(i).is_file()][:n]


def parse_choices(task: Any, form: Any) -> list[Any]:
    """The non-empty ``choice`` fields, as the task reads a typed choice (telling: the text; pointing: a box
    'x,y,width,height' in the image's pixels)."""
    choices = [task.parse_choice(str(c).strip()) for c in form.getlist("choice") if str(c).strip()]
    if len(choices) < 2:
        raise VQAError(f"give at least two {task.choice_words}")
    if len(choices) > MAX_CHOICES:
        raise VQAError(f"give at most {MAX_CHOICES} {task.choice_words}")
    return choices


async def read_image(form: Any, folder: Path, answerer: Answerer) -> Path:
    """The image of a request: an upload (copied into ``folder``, a temporary one) or one of the run's samples."""
    upload = form.get("image")
    if upload is not None and hasattr(upload, "read"):
        data = await upload.read(MAX_UPLOAD + 1)
        if not data:
            raise VQAError("the uploaded file is empty: pick an image")
        if len(data) > MAX_UPLOAD:
            raise VQAError(f"the uploaded file is over {MAX_UPLOAD // 2**20} MB")
        path = folder / "upload"
        path.write_bytes(data)
        try:  # not an image, a damaged one, or more pixels than the features stage takes
            load_image(path, 8, answerer.run.cfg.features.max_pixels)
        except Exception as e:
            raise VQAError(f"{UPLOAD_NAME} cannot be used: {summary(e)}") from None
        return path
    sample = str(form.get("sample") or "")
    if sample:
        if not sample.isdigit() or int(sample) not in answerer.samples:
            raise VQAError(f"no sample image {sample!r}")
        return answerer.run.dataset.image_path(int(sample))
    raise VQAError("pick an image first (drop one, choose a file, or take a sample)")


def make_app(answerer: Answerer) -> Starlette:
    """The page, its scripts, the samples and two JSON endpoints (``/api/info``, ``/api/ask``)."""
    static = resources.files("vqa.report") / "serve_static"
    maps = resources.files("vqa.report") / "explorer_static" / "maps.js"

    async def page(request: Request) -> Response:
        name, media = STATIC[request.url.path]
        src = maps if name == "maps.js" else static / name
        return Response(src.read_bytes(), media_type=media, headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> Response:
        return JSONResponse(answerer.info())

    async def sample(request: Request) -> Response:
        image_id = int(request.path_params["image_id"])
        if image_id not in answerer.samples:
            return JSONResponse({"error": f"no sample image {image_id}"}, status_code=404)
        return FileResponse(answerer.run.dataset.image_path(image_id))

    async def ask(request: Request) -> Response:
        try:
            async with request.form(max_files=1, max_fields=16) as form:
                question = str(form.get("question") or "").strip()
                if not question:
                    raise VQAError("type a question")
                choices = parse_choices(answerer.task, form)
                with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
                    image = await read_image(form, Path(tmp), answerer)
                    result = await run_in_threadpool(answerer.ask, image, question, choices)
            return JSONResponse(result)
        except VQAError as e:
            return JSONResponse({"error": re.sub(rf"\S*{TMP_PREFIX}[^/\s]*/upload", UPLOAD_NAME, str(e))},
                                status_code=400)  # fmt: skip
        except Exception as e:  # a bug, not the user's input: a line on the page, the traceback nowhere
            return JSONResponse({"error": f"the server could not answer: {summary(e)}"}, status_code=500)

    routes = [Route(path, page) for path in STATIC]
    routes += [Route("/api/info", info), Route("/api/ask", ask, methods=["POST"]),
               Route("/sample/{image_id:int}", sample)]  # fmt: skip
    return Starlette(routes=routes)
