"""`make serve`: a local page to ask a trained run about your own photo and see where it looked.

    vqa7w serve --config configs/default.yaml [run.dir=runs/x ...] [--host 127.0.0.1] [--port 7860]

The page listens on this computer only (127.0.0.1) unless ``--host`` says otherwise. Needs the serve extra
(``pip install -e '.[serve]'``, which ``make serve`` runs).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

from .. import cli
from ..common.errors import VQAError
from ..predictor import Predictor

try:  # the optional extra: a clear line, not an ImportError, when it is missing
    import uvicorn

    from vqa.report.serve import Answerer, make_app
except ImportError as e:
    uvicorn = None
    MISSING = e.name


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this computer only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")


def check_port(host: str, port: int) -> None:
    """Refuse a port in use before the model loads, naming the way out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise VQAError(f"cannot listen on {host}:{port} ({e.strerror}): pass another port, "
                           'e.g. make serve ARGS="--port 7861"') from None  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    run, args = cli.parse(__doc__.splitlines()[0], argv, _flags)
    if uvicorn is None:
        raise VQAError(f"make serve needs the serve extra ({MISSING} is missing): pip install -e '.[serve]'")
    check_port(args.host, args.port)
    print(f"loading the run in {run.dir} ...", flush=True)
    answerer = Answerer(Predictor.from_config(run), run)
    answerer.warm_up()
    print(f"open http://{args.host}:{args.port}/ in a browser (Ctrl-C stops the server)", flush=True)
    uvicorn.run(make_app(answerer), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    sys.exit(cli.run(main))
