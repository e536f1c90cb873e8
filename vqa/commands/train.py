"""`make train`: train the VQA model on the train split, select the best epoch on val.

    vqa7w train --config configs/default.yaml [model.variant=blind train.epochs=3 ...]
    accelerate launch --num_processes N -m vqa.commands train --config ...     (train.batch_size is the global batch)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import cli
from ..accel import make_accelerator
from ..config import save_config
from ..training import train


def main(argv: Sequence[str] | None = None) -> None:
    run, _ = cli.parse(__doc__.splitlines()[0], argv)
    accelerator = make_accelerator(run.cfg, training=True)
    if accelerator.is_main_process:
        save_config(run.cfg)
    state = train(run, accelerator)
    accelerator.print(f"best val accuracy {state.best_accuracy:.4f} at epoch {state.best_epoch} "
                      f"({accelerator.num_processes} process(es)); model in {run.checkpoints_dir / 'best'}")
    accelerator.end_training()  # tear the process group down before exit (an abort at exit otherwise)


if __name__ == "__main__":
    sys.exit(cli.run(main))
