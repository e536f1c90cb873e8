"""Grounding targets on the grid and the two losses that use them (attention, counting gates)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vqa.data.boxes import Box
from vqa.data.grounding import attention_loss, box_coverage, gate_loss, grounding_targets


def box(x: float, y: float, w: float, h: float) -> Box:
    return Box(1, "thing", x, y, w, h)


def test_density_counts_the_boxes(tmp_path, monkeypatch) -> None:
    """Each box adds a mass of 1 however large it is, so a count question's density sums to its count."""
    boxes = {1: [box(0, 0, 40, 40), box(60, 60, 20, 20), box(10, 70, 10, 10)], 2: [box(0, 0, 100, 100)]}
    monkeypatch.setattr("vqa.data.grounding.header_size", lambda path: (100, 100))
    qa = [SimpleNamespace(qa_id=i, image_id=1) for i in (1, 2, 3)]
    dataset = SimpleNamespace(qa=qa, image_path=lambda image_id: tmp_path / "x.jpg")
    three, whole, none = grounding_targets(boxes, dataset, (8, 5, 5))
    assert sum(three) == pytest.approx(3.0) and sum(whole) == pytest.approx(1.0) and none == []
    assert max(three) <= 1.0 + 1e-6, "objects in different cells: no cell holds more than one"
    assert box_coverage([box(0, 0, 40, 40)], 100, 100, 5, 5)[0, 0] == 1.0


def test_supervised_gates_learn_to_count() -> None:
    """Free gate logits trained on the density reach a mass equal to the number of boxes, for every
    candidate; a question without a box adds nothing to either loss."""
    density = torch.zeros(2, 25)
    density[0, [0, 7, 7 + 5, 20]] = torch.tensor([1.0, 0.5, 0.5, 1.0])  # 3 objects, one over two cells
    batch = {"target": density, "label": torch.tensor([2, 0])}
    logits = torch.zeros(2, 4, 25, 2, requires_grad=True)  # [b, K, H*W, G]
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(600):
        opt.zero_grad()
        gate_loss(logits, batch).backward()
        opt.step()
    mass = torch.sigmoid(logits).sum(2)  # [b, K, G]
    assert torch.allclose(mass[0], torch.full((4, 2), 3.0), atol=0.1), mass[0]
    assert logits.grad[1].abs().sum() == 0, "no box, no gradient"
    attention = torch.softmax(torch.randn(2, 4, 2, 25), -1).view(2, 4, 2, 5, 5)
    target = density[0] / 3
    true = attention[0, 2].mean(0).flatten()
    assert attention_loss(attention, batch) == pytest.approx(float(-(target * true.log()).sum() / 2), rel=1e-4)
