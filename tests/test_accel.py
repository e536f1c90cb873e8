"""Precision chosen from what the hardware says it computes natively, never from a timing."""

from __future__ import annotations

import pytest
import torch

from vqa import accel
from vqa.accel import training_precision
from vqa.features.extract import resolve_precision


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (False, False, ("fp32", "auto: this CPU has neither AVX512-BF16 nor AMX")),
    (False, True, ("bf16", "auto: this CPU has AVX512-BF16")),
    (True, False, ("bf16", "auto: this CPU has AMX")),
])  # fmt: skip
def test_auto_is_bf16_exactly_where_the_cpu_has_it(monkeypatch, amx, avx512_bf16, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert training_precision("auto") == expected
    assert resolve_precision("auto", torch.device("cpu")) == expected[0], "features decide by the same flags"
    assert training_precision("fp32") == ("fp32", "train.mixed_precision"), "an explicit choice is kept"


def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "GPU X")
    for ok, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda ok=ok: ok)
        assert accel.training_precision("auto")[0] == expected
        assert resolve_precision("auto", torch.device("cuda")) == ("bf16" if ok else "fp16")
