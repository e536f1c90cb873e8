"""The training order and batches: image-major sampling, one grid per image in a batch, the same model output."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from conftest import build_model, model_spec
from test_model import batch as model_batch

from vqa.data.loader import EpochSampler, ImageMajorSampler, collate

IMAGES = [7, 7, 7, 3, 3, 9, 9, 9, 9, 1, 5, 5]  # the image of each row, as in a QA table (file order)


def test_image_major_order_is_a_permutation_with_each_image_together() -> None:
    sampler = ImageMajorSampler(IMAGES, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(IMAGES))), "every question exactly once"
    runs = [IMAGES[order[0]]] + [IMAGES[b] for a, b in pairwise(order) if IMAGES[a] != IMAGES[b]]
    assert len(runs) == len(set(IMAGES)), f"each image's questions come in one run: {runs}"
    assert list(ImageMajorSampler(IMAGES, seed=0)) == order, "a pure function of (seed, epoch)"
    orders = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert len(orders) == 6, "a new order every epoch"
    image_orders = {tuple(dict.fromkeys(IMAGES[i] for i in o)) for o in orders}
    within = {tuple(i for i in o if IMAGES[i] == 9) for o in orders}
    assert len(image_orders) > 1 and len(within) > 1, "both the images and their questions are shuffled"


def test_question_order_mixes_images() -> None:
    order = list(EpochSampler(len(IMAGES), seed=0))
    assert sorted(order) == list(range(len(IMAGES)))
    assert order != list(ImageMajorSampler(IMAGES, seed=0))


def item(image_id: int, label: int) -> dict:
    return {"image_id": image_id, "features": torch.full((2, 1, 1), float(image_id)), "question": [2, 3],
            "candidates": [[4], [5, 6], [7], [8]], "label": label, "order": torch.arange(4).numpy(), "qa_id": label,
            "type": 0, "target": [], "per_candidate": {}}  # fmt: skip


def test_collate_holds_each_image_once() -> None:
    b = collate([item(7, 0), item(7, 1), item(3, 2), item(7, 3), item(3, 0)])
    assert b["features"].shape == (2, 2, 1, 1), "two distinct images"
    assert b["image_index"].tolist() == [0, 0, 1, 0, 1]
    assert b["features"][b["image_index"], 0, 0, 0].tolist() == [7, 7, 3, 7, 3], "each question finds its image"
    assert b["label"].tolist() == [0, 1, 2, 3, 0]


@pytest.mark.parametrize("variant", ["attention", "no_attention", "image_only"])
@pytest.mark.parametrize("attention", ["additive", "bilinear"])
def test_shared_grids_give_the_same_scores_as_one_grid_per_question(attention: str, variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_spec(20, (16, 3, 4), variant=variant, embed_dim=8, hidden_dim=12, attention_dim=10,
                               count=True, attention=attention)).eval()  # fmt: skip
    x = model_batch()  # 3 questions
    index = torch.tensor([1, 0, 1])  # questions 0 and 2 ask about the same image
    per_question = {**x, "features": x["features"][index]}
    shared = {**x, "features": x["features"][:2], "image_index": index}
    a_scores, a_att, (a_gates, _) = model(**per_question, with_aux=True)
    b_scores, b_att, (b_gates, _) = model(**shared, with_aux=True)
    torch.testing.assert_close(a_scores, b_scores)
    torch.testing.assert_close(a_att, b_att)
    torch.testing.assert_close(a_gates, b_gates)
