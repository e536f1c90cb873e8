"""The features stage: store format, reader, resume, settings guard, precision, weights loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from vqa.common.errors import VQAError
from vqa.data.tasks.telling import load_telling
from vqa.features import extract as extract_mod
from vqa.features import preflight as store_mod
from vqa.features.backbones import build_backbone
from vqa.features.extract import extract_features, forward
from vqa.features.images import load_image, to_tensor
from vqa.features.store import FeatureReader, features_dir, shard_path

FAST = ["features.image_size=64", "features.shard_size=8", "features.batch_size=4", "features.num_workers=0",
        "features.precision=fp32"]  # fmt: skip


def run_features(cfg):
    images = load_telling(cfg.data.annotations, cfg.data.images).image_paths()
    return extract_features(cfg, images, Accelerator(cpu=True))


def with_run_dir(cfg, run_dir: Path, *extra: str):
    """The tiny dataset's config with its own run dir and the fast feature settings."""
    from vqa.config import load_config

    base = [f"data.annotations={cfg.data.annotations}", f"data.images={cfg.data.images}",
            f"data.grounding={cfg.data.grounding}", f"run.dir={run_dir}"]  # fmt: skip
    return load_config(None, [*base, *FAST, *extra])


def arrays(run_dir: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted((run_dir / "features").glob("shard_*.npy"))}


@pytest.fixture(scope="module")
def store(tiny_dataset, tmp_path_factory):
    cfg = with_run_dir(tiny_dataset, tmp_path_factory.mktemp("run"))
    run_features(cfg)
    return cfg


def test_store_shapes_dtype_and_manifest(store) -> None:
    manifest = json.loads((features_dir(store) / "manifest.json").read_text())
    ds = load_telling(store.data.annotations, store.data.images)
    assert manifest["grid"] == [1344, 2, 2] and manifest["dtype"] == "float16"
    assert manifest["backbone"] == "efficientnet_lite0" and manifest["pretrained"] is True
    assert manifest["image_size"] == 64 and manifest["precision"] == "fp32"
    assert manifest["preprocessing"]["resize"] == "squash" and manifest["preprocessing"]["size"] == [64, 64]
    n, per_shard = len(ds.image_ids()), store.features.shard_size  # the world the fixture built, the config's shards
    assert n > 2 * per_shard, "the tests below need more than two shards"
    assert manifest["counts"] == {"images": n, "extracted": n, "missing": 0, "shards": -(-n // per_shard)}
    assert sorted(map(int, manifest["images"])) == ds.image_ids()
    assert {"torch", "torchvision", "numpy", "python"} <= set(manifest["software"])
    shard0 = np.load(shard_path(features_dir(store), 0), mmap_mode="r")
    assert shard0.dtype == np.float16 and shard0.shape == (per_shard, 1344, 2, 2)
    assert not list(features_dir(store).glob("*.partial"))


def test_reader_round_trip(store) -> None:
    reader = FeatureReader(features_dir(store))
    ds = load_telling(store.data.annotations, store.data.images)
    backbone = build_backbone("efficientnet_lite0", 64, hypercolumn=[4, 8])
    assert len(reader) == len(ds.image_ids()) and ds.image_ids()[0] in reader
    for image_id in ds.image_ids()[:3]:
        got = reader[image_id]
        assert got.shape == (1344, 2, 2) and got.dtype == torch.float16
        pixels = to_tensor(load_image(ds.image_path(image_id), 64))[None]
        direct = forward(backbone, pixels, "fp32", torch.device("cpu"))[0]
        torch.testing.assert_close(got.float(), torch.from_numpy(direct).float(), rtol=1e-2, atol=1e-2)
    assert reader[ds.image_ids()[0]].abs().sum() > 0
    with pytest.raises(VQAError, match="image_id 999999 has no features"):
        reader[999999]


def test_reader_is_lazy_and_picklable(store) -> None:
    import pickle

    reader = FeatureReader(features_dir(store))
    image_id = next(iter(reader.index))
    first = reader[image_id]
    assert reader._open, "a shard is opened on first use"
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._open == {}, "open files are not pickled into DataLoader workers"
    assert torch.equal(clone[image_id], first)


def test_resume_after_crash_reuses_finished_shards(tiny_dataset, tmp_path, monkeypatch, store) -> None:
    cfg = with_run_dir(tiny_dataset, tmp_path / "run")
    real_finish, calls = extract_mod.ShardWriter.finish, []

    def crash_after_two(self, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill looks like from the inside
        calls.append(self.shard)
        return real_finish(self, *args)

    monkeypatch.setattr(extract_mod.ShardWriter, "finish", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_features(cfg)
    root = features_dir(cfg)
    assert not (root / "manifest.json").exists()
    done = {p.name: p.stat().st_mtime_ns for p in root.glob("shard_*.npy")}
    assert len(done) == 2
    monkeypatch.setattr(extract_mod.ShardWriter, "finish", real_finish)
    out = run_features(cfg)
    n = len(load_telling(cfg.data.annotations, cfg.data.images).image_ids())
    assert out["extracted_now"] == n - 2 * cfg.features.shard_size, "the two finished shards are not redone"
    assert all(shard_path(root, i).stat().st_mtime_ns == done[shard_path(root, i).name] for i in (0, 1))
    ref = arrays(Path(store.run.dir))
    got = arrays(tmp_path / "run")
    assert ref.keys() == got.keys() and all(np.array_equal(ref[k], got[k]) for k in ref)


def test_rerun_is_a_no_op_and_other_settings_are_refused(store) -> None:
    assert run_features(store)["extracted_now"] == 0
    other = with_run_dir(store, Path(store.run.dir), "features.image_size=96")
    with pytest.raises(VQAError, match=r"other settings \(.*image_size: 64 there, 96 now.*features.overwrite=true"):
        run_features(other)
    with pytest.raises(VQAError, match="precision: 'fp32' there, 'bf16' now"):
        run_features(with_run_dir(store, Path(store.run.dir), "features.precision=bf16"))


def test_overwrite_and_random_init_are_recorded(tiny_dataset, tmp_path) -> None:
    cfg = with_run_dir(tiny_dataset, tmp_path / "run", "features.pretrained=false")
    run_features(cfg)
    manifest = json.loads((features_dir(cfg) / "manifest.json").read_text())
    assert manifest["pretrained"] is False and manifest["weights"] == "random"
    again = with_run_dir(tiny_dataset, tmp_path / "run", "features.overwrite=true")
    n = len(load_telling(cfg.data.annotations, cfg.data.images).image_ids())
    assert run_features(again)["extracted_now"] == n
    assert json.loads((features_dir(cfg) / "manifest.json").read_text())["pretrained"] is True


def test_bf16_is_close_to_fp32(tiny_dataset) -> None:
    ds = load_telling(tiny_dataset.data.annotations, tiny_dataset.data.images)
    backbone = build_backbone("efficientnet_lite0", 224)
    pixels = torch.stack([to_tensor(load_image(ds.image_path(i), 224)) for i in ds.image_ids()[:4]])
    a = torch.from_numpy(forward(backbone, pixels, "fp32", torch.device("cpu"))).float().flatten(1)
    b = torch.from_numpy(forward(backbone, pixels, "bf16", torch.device("cpu"))).float().flatten(1)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.98


def test_inference_optimisations_keep_the_numbers() -> None:
    x = torch.randn(2, 3, 96, 96)
    for name in ("efficientnet_lite0", "resnet50"):
        torch.manual_seed(0)
        plain = build_backbone(name, 96, pretrained=False, optimize=False).module
        torch.manual_seed(0)
        fast = build_backbone(name, 96, pretrained=False, optimize=True).module
        with torch.inference_mode():
            want = plain(x.clone())
            torch.testing.assert_close(fast(x.clone()), want, rtol=1e-3, atol=1e-4 * want.abs().max().item())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


@pytest.mark.parametrize(("name", "channels", "extra"), [("efficientnet_lite0", 1280, 24 + 40),
                                                      ("resnet50", 2048, 256 + 512)])  # fmt: skip
def test_hypercolumn_appends_pooled_earlier_stages(name: str, channels: int, extra: int) -> None:
    """features.hypercolumn=[4, 8]: the head grid is unchanged, and the early stages are pooled onto its cells."""
    x = torch.rand(2, 3, 96, 96)
    torch.manual_seed(0)
    plain = build_backbone(name, 96, pretrained=False)
    torch.manual_seed(0)
    hyper = build_backbone(name, 96, pretrained=False, hypercolumn=[4, 8])
    assert hyper.channels == channels + extra
    with torch.inference_mode():
        want, got = plain.module(x), hyper.module(x)
    assert got.shape == (2, channels + extra, 3, 3)
    torch.testing.assert_close(got[:, :channels], want)
    assert got[:, channels:].abs().sum() > 0
    with pytest.raises(VQAError, match="no earlier stage of stride"):
        build_backbone(name, 96, pretrained=False, hypercolumn=[2])


# ------------------------------------------------------------------------------------------------ weights
def test_resnet_without_local_weights_says_how_to_get_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(VQAError, match=r"never downloaded at run time.*features\.weights=.*features\.pretrained=false"):
        build_backbone("resnet50", 224, pretrained=True)


def test_weights_files_load_safely(tmp_path) -> None:
    from safetensors.torch import save_file

    state = build_backbone("resnet50", 64, pretrained=False, optimize=False).module.state_dict()
    state = {f"{'conv1' if k.startswith('0.') else k}": v for k, v in state.items()}  # not a full ResNet: refused
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(VQAError, match="do not fit this backbone"):
        build_backbone("resnet50", 64, weights=str(tmp_path / "partial.pth"))

    import torchvision

    full = torchvision.models.resnet50().state_dict()
    torch.save(full, tmp_path / "r50.pth")
    save_file(full, str(tmp_path / "r50.safetensors"))
    for name in ("r50.pth", "r50.safetensors"):
        assert build_backbone("resnet50", 64, weights=str(tmp_path / name)).weights.endswith(name)
    with pytest.raises(VQAError, match="do not fit this backbone"):
        build_backbone("resnet101", 64, weights=str(tmp_path / "r50.pth"))

    (tmp_path / "cut.pth").write_bytes((tmp_path / "r50.pth").read_bytes()[:1000])
    with pytest.raises(VQAError, match=r"cannot load weights from .*cut\.pth"):
        build_backbone("resnet50", 64, weights=str(tmp_path / "cut.pth"))

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"conv1.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(VQAError, match=r"cannot load weights from .*evil\.pth"):
        build_backbone("resnet50", 64, weights=str(tmp_path / "evil.pth"))
    assert not (tmp_path / "pwned").exists(), "weights_only=True must refuse code in a pickle"


def test_a_disk_too_small_is_refused_before_any_work(tiny_dataset, tmp_path, monkeypatch) -> None:
    """The store size (images x C x H x W x 2 bytes) is checked against free space before the first forward."""
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(store_mod.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10_000, 10_000))
    cfg = with_run_dir(tiny_dataset, tmp_path / "run")
    n = len(load_telling(cfg.data.annotations, cfg.data.images).image_ids())
    need = n * 1344 * 2 * 2 * 2  # Lite0 at 64 px with hypercolumn [4, 8]: a 1344 x 2 x 2 fp16 grid per image
    with pytest.raises(VQAError, match=rf"not enough disk .*needs {need / 1e9:.2f} GB more, 0.00 GB free "
                                       rf"\({n} images x 1344x2x2 fp16\)"):  # fmt: skip
        run_features(cfg)
    assert not list((tmp_path / "run" / "features").glob("shard_*")), "refused before the first shard"


@pytest.mark.slow
def test_compiled_backbone_gives_the_same_features(store, tmp_path) -> None:
    """features.compile=true (inductor, frozen weights): the same grid up to float rounding, recorded in settings."""
    from vqa.config import load_config

    d = store.data
    cfg = load_config(None, [f"data.annotations={d.annotations}", f"data.images={d.images}", f"run.dir={tmp_path}",
                             *FAST, "features.compile=true"])  # fmt: skip
    run_features(cfg)
    settings = json.loads((tmp_path / "features" / "settings.json").read_text())
    assert settings["compile"] is True and "compile" not in json.loads(
        (features_dir(store) / "settings.json").read_text()), "a store without compile keeps its old fingerprint"
    eager, compiled = FeatureReader(features_dir(store)), FeatureReader(tmp_path / "features")
    for image_id in list(eager.index)[:8]:
        torch.testing.assert_close(compiled[image_id].float(), eager[image_id].float(), rtol=0.02, atol=0.02)


def test_images_changed_under_the_same_names_are_extracted_again(tiny_dataset, tmp_path, capsys) -> None:
    """Images regenerated under the same names (a new synthetic world, re-encoded files, a fixed bad image) must not
    be read through their old features: each shard records its images' file sizes, and a rerun extracts again only
    the shards whose images changed, and says so. An untouched copy of the images is the same data."""
    import shutil

    from PIL import Image

    from vqa.config import load_config

    images = tmp_path / "images"
    shutil.copytree(tiny_dataset.data.images, images)
    ds = tiny_dataset.data
    base = [f"data.annotations={ds.annotations}", f"data.grounding={ds.grounding}", f"run.dir={tmp_path / 'run'}",
            *FAST, "features.shard_size=8"]  # fmt: skip
    cfg = load_config(None, [*base, f"data.images={images}"])
    run_features(cfg)
    root = features_dir(cfg)
    before = {p.name: p.stat().st_mtime_ns for p in root.glob("shard_*.npy")}
    moved = tmp_path / "moved"
    shutil.copytree(images, moved)  # a copy (new times, same files) is the same data
    assert run_features(load_config(None, [*base, f"data.images={moved}"]))["extracted_now"] == 0
    first = min(load_telling(ds.annotations, images).image_ids())  # in shard 0
    path = images / f"v7w_{first}.jpg"
    old = FeatureReader(root)[first].clone()
    Image.open(path).convert("RGB").rotate(90).save(path, quality=40)
    capsys.readouterr()
    out = run_features(cfg)
    assert out["extracted_now"] == 8, "only the changed image's shard"
    assert "1 shard(s) extracted again: their images changed" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in root.glob("shard_*.npy")}
    assert [n for n in before if before[n] != after[n]] == ["shard_00000.npy"]
    assert not torch.equal(FeatureReader(root)[first], old), "the new pixels' features"
    assert run_features(cfg)["extracted_now"] == 0


def test_a_store_serves_a_dataset_over_a_subset_of_its_images(store, tmp_path) -> None:
    """A pointing file (or a filtered dataset) asks about some of the telling images: the telling store serves it
    with nothing extracted, training reads it; a dataset with an image the store lacks is refused, naming it."""
    from vqa.config import load_config
    from vqa.data.synth.pointing import annotation_paths
    from vqa.features.store import check_covers
    from vqa.run import Run

    d = store.data
    shared = f"features.dir={features_dir(store)}"
    telling = json.loads(Path(d.annotations).read_text())
    subset = {**telling, "images": telling["images"][::3]}
    (tmp_path / "subset.json").write_text(json.dumps(subset))
    kept = {im["image_id"] for im in subset["images"]}
    cfg = load_config(None, [f"data.annotations={tmp_path / 'subset.json'}", f"data.images={d.images}",
                             f"run.dir={tmp_path / 'run'}", *FAST, shared])  # fmt: skip
    before = {p.name: p.stat().st_mtime_ns for p in features_dir(store).glob("*")}
    out = run_features(cfg)
    assert out["extracted_now"] == 0 and out["served_by"] == 38 and out["images"] == len(kept)
    assert {p.name: p.stat().st_mtime_ns for p in features_dir(store).glob("*")} == before, "the store is untouched"
    pointing = load_config(None, [f"data.annotations={annotation_paths(store)['pointing']}", "data.task=pointing",
                                  f"data.images={d.images}", f"run.dir={tmp_path / 'p'}", *FAST, shared])  # fmt: skip
    assert extract_features(pointing, Run(pointing).dataset.image_paths(), Accelerator(cpu=True))["extracted_now"] == 0

    first = telling["images"][0]
    qa = [{**q, "qa_id": 10_000 + i, "image_id": 999} for i, q in enumerate(first["qa_pairs"])]
    extra = {**telling, "images": [*telling["images"], {**first, "image_id": 999, "qa_pairs": qa}]}
    (tmp_path / "more.json").write_text(json.dumps(extra))
    more = load_config(None, [f"data.annotations={tmp_path / 'more.json'}", f"data.images={d.images}",
                              f"run.dir={tmp_path / 'more'}", *FAST, shared])  # fmt: skip
    with pytest.raises(VQAError, match="lacks 1 of this dataset's 39") as e:
        run_features(more)
    assert "image_id 999" in e.value.render()
    with pytest.raises(VQAError, match=r"lacks 1 image\(s\) of this dataset \(image_id 999\)"):
        check_covers(FeatureReader(features_dir(store)), [*kept, 999])
