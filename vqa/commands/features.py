"""`make features`: extract the CNN grid of every image in the dataset into <run.dir>/features/.

    vqa7w features --config configs/default.yaml [features.backbone=resnet152 ...]
    accelerate launch --num_processes N -m vqa.commands features --config ...     (one shard set per process)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import cli
from ..accel import make_accelerator
from ..config import save_config
from ..features.extract import extract_features


def main(argv: Sequence[str] | None = None) -> None:
    run, _ = cli.parse(__doc__.splitlines()[0], argv)
    cfg, accelerator = run.cfg, make_accelerator()
    dataset = run.dataset  # validated before any long work
    run.task.check_images(dataset)  # e.g. pointing's candidate boxes lie on their images (file headers only)
    if accelerator.is_main_process:
        save_config(cfg)
    out = extract_features(cfg, dataset.image_paths(), accelerator)
    if accelerator.is_main_process:
        s = out["settings"]
        rate = out["extracted_now"] / out["seconds"] if out["extracted_now"] else 0.0
        print(f"features: {out['images']} images -> {run.features_dir} ({s['backbone']}@{s['image_size']}, grid "
              f"{'x'.join(map(str, s['grid']))}, {s['precision']}, {out['processes']} process(es))")
        if out.get("served_by"):
            print(f"  the store already holds all {out['images']} images of this dataset (it serves "
                  f"{out['served_by']}): nothing to extract")  # fmt: skip
        else:
            print(f"  extracted {out['extracted_now']} now in {out['seconds']:.1f}s ({rate:.1f} img/s end to end)")
        if out["missing"]:
            print(f"  {len(out['missing'])} image(s) skipped as unusable (listed in manifest.json 'missing'):")
            for image_id, reason in sorted(out["missing"].items())[:20]:
                print(f"    image_id {image_id}: {reason}")
    accelerator.end_training()  # tear the process group down before exit (an abort at exit otherwise)


if __name__ == "__main__":
    sys.exit(cli.run(main))
