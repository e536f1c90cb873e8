"""The whole model (``vqa/model/net.py``): shapes for every variant, attention is a distribution, nothing is cached
between calls, each variant reads what it should and nothing else, every built part is used."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, model_spec

from vqa.model.looks import Look, MeanLook, NoLook


def batch(b: int = 3, c: int = 16, h: int = 3, w: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features": torch.rand(b, c, h, w, generator=g).half(),
        "question": torch.randint(2, 20, (b, 7), generator=g),
        "question_len": torch.tensor([7, 3, 1][:b]),
        "candidates": torch.randint(2, 20, (b, 4, 5), generator=g),
        "candidate_len": torch.randint(1, 6, (b, 4), generator=g),
    }


def boxes(b: int = 3) -> torch.Tensor:
    """[B, 4, 4] candidate boxes (x0, y0, x1, y1) in [0, 1]: four distinct boxes per question."""
    base = torch.tensor([[0.0, 0.0, 0.3, 0.3], [0.6, 0.1, 0.9, 0.5], [0.3, 0.6, 0.7, 1.0], [0.1, 0.4, 0.4, 0.7]])
    return base.expand(b, 4, 4).clone()


def pointing_batch() -> dict[str, torch.Tensor]:
    return {**batch(), "candidates": torch.ones(3, 4, 1, dtype=torch.long), "candidate_len": torch.ones(3, 4),
            "boxes": boxes()}  # fmt: skip


@pytest.mark.parametrize("attention", ["additive", "bilinear"])
@pytest.mark.parametrize(("count", "question_glimpses", "evidence"),
                         [(False, 0, False), (True, 0, False), (True, 1, False), (True, 1, True), (False, 0, True)])
@pytest.mark.parametrize("variant", ["attention", "no_attention", "image_only", "blind", "answer_only"])
@pytest.mark.parametrize(("rnn", "bidirectional", "answer_encoder"), [("lstm", False, "rnn"), ("gru", True, "mean")])
def test_shapes_of_every_variant(variant: str, rnn: str, bidirectional: bool, answer_encoder: str, count: bool,
                                 question_glimpses: int, evidence: bool, attention: str) -> None:  # fmt: skip
    dims = {"embed_dim": 8, "hidden_dim": 12, "attention_dim": 10, "glimpses": 2}
    spec = model_spec(20, (16, 3, 4), variant=variant, rnn=rnn, bidirectional=bidirectional,
                     answer_encoder=answer_encoder, count=count, attention=attention,
                     question_glimpses=question_glimpses, evidence=evidence, **dims)  # fmt: skip
    model = build_model(spec).eval()
    scores, attention = model(**batch())
    g = 2 + (question_glimpses if variant == "attention" else 0)  # image_only has no question to drive a glimpse
    assert scores.shape == (3, 4) and attention.shape == (3, 4, g, 3, 4)
    assert torch.allclose(attention.sum((-2, -1)), torch.ones(3, 4, g), atol=1e-5)
    if variant in ("no_attention", "blind", "answer_only"):
        assert torch.allclose(attention, torch.full_like(attention, 1 / 12))
    again, _ = model(**batch())
    assert torch.equal(scores, again), "eval-mode forward is a pure function of its inputs"
    _, _, (gates, matching) = model(**batch(), with_aux=True)
    seen = evidence and variant in ("attention", "image_only")
    assert (matching.shape == (3, 4, 3)) if seen else matching is None, "evidence [B, K, I] on every image"
    counts = count and variant in ("attention", "image_only")
    gate_glimpses = question_glimpses if variant == "attention" and question_glimpses else 2
    assert (gates.shape == (3, 4, 12, gate_glimpses)) if counts else gates is None, "gate logits [B, K, H*W, G]"
    scores.sum().backward()


@pytest.mark.parametrize(("variant", "look"), [("attention", Look), ("image_only", Look), ("no_attention", MeanLook),
                                               ("blind", NoLook), ("answer_only", NoLook)])  # fmt: skip
def test_the_variant_chooses_the_look_when_the_model_is_built(variant: str, look: type) -> None:
    assert type(build_model(model_spec(20, (16, 3, 4), variant=variant, embed_dim=8, hidden_dim=12)).look) is look


@pytest.mark.parametrize("task", ["telling", "pointing"])
@pytest.mark.parametrize("variant", ["attention", "no_attention", "image_only", "blind", "answer_only"])
def test_every_part_built_is_used(task: str, variant: str) -> None:
    """DDP fails on parameters that get no gradient: the parts chosen at build time are exactly those used.
    Known exception: pointing without a question reads no token at all, so the embedding table gets none."""
    gq = 1 if task == "telling" else 0
    spec = model_spec(20, (16, 3, 4), variant=variant, task=task, embed_dim=8, hidden_dim=12, attention_dim=16,
                     count=True, question_glimpses=gq, cell_context=3, evidence=True)  # fmt: skip
    model = build_model(spec)
    x = pointing_batch() if task == "pointing" else batch()
    scores, _ = model(**x)
    scores.sum().backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused == ({"embed.weight"} if task == "pointing" and not spec.reads_question else set())


@pytest.mark.parametrize("attention", ["additive", "bilinear"])
def test_training_step_runs_under_cpu_bf16_autocast(attention: str) -> None:
    """train.mixed_precision=bf16 on a CPU: every op must have a bf16 (or fp32 fallback) kernel, whatever the CPU
    (oneDNN's fused RNN layer has no bf16 primitive without AVX512-BF16)."""
    model = build_model(model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10, count=True,
                               attention=attention))  # fmt: skip
    x = {**batch(), "question_len": torch.tensor([7, 6, 5])}  # padding under half: the padded RNN path
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, _ = model(**x)
    scores.float().sum().backward()
    assert torch.isfinite(scores).all() and model.grid.cells[0].weight.grad is not None


SHARED = [pytest.param(task, att, gq, id=f"{task}-{att}-gq{gq}")
          for task, att, gq in [("telling", "bilinear", 1), ("telling", "additive", 1), ("pointing", "additive", 0)]]


@pytest.mark.parametrize(("task", "attention", "question_glimpses"), SHARED)
def test_a_grid_shared_by_its_questions_scores_as_a_grid_per_question(task: str, attention: str,
                                                                     question_glimpses: int) -> None:  # fmt: skip
    """``image_index`` only saves work: two questions about one image score as if each had its own copy
    (``test_loader`` checks the variants; here the question's own glimpses and pointing's parts)."""
    torch.manual_seed(0)
    model = build_model(model_spec(20, (16, 3, 4), task=task, attention=attention, question_glimpses=question_glimpses,
                               count=True, embed_dim=8, hidden_dim=12, attention_dim=10)).eval()  # fmt: skip
    x = pointing_batch() if task == "pointing" else batch()
    index = torch.tensor([1, 0, 1])
    with torch.no_grad():
        shared = model(**{**x, "features": x["features"][:2]}, image_index=index)
        own = model(**{**x, "features": x["features"][:2][index]})
    torch.testing.assert_close(shared, own)


def test_attention_depends_on_the_candidate_and_on_position() -> None:
    torch.manual_seed(0)
    model = build_model(model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10)).eval()
    x = batch()
    _, attention = model(**x)
    assert not torch.allclose(attention[:, 0], attention[:, 1]), "each candidate has its own attention"
    same = {**x, "features": torch.ones_like(x["features"])}  # identical cells: only position tells them apart
    _, flat = model(**same)
    assert flat[0, 0, 0].std() > 0, "the grid carries position information"


def test_bilinear_attention_depends_on_the_candidate() -> None:
    torch.manual_seed(0)
    model = build_model(model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10, count=True,
                               attention="bilinear")).eval()  # fmt: skip
    _, attention = model(**batch())
    assert not torch.allclose(attention[:, 0], attention[:, 1]), "each candidate has its own attention"


def test_blind_ignores_the_image() -> None:
    model = build_model(model_spec(20, (16, 3, 4), variant="blind", embed_dim=8, hidden_dim=12)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "features": torch.zeros_like(x["features"])})
    assert torch.equal(a, b)


def test_answer_only_reads_nothing_but_the_candidates() -> None:
    """Visual7W's distractors are known to leak the answer (Chao et al., NAACL 2018): this baseline sees the
    candidate alone, no question and no image."""
    model = build_model(model_spec(20, (16, 3, 4), variant="answer_only", embed_dim=8, hidden_dim=12)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "question": torch.randint(2, 20, x["question"].shape),
                    "features": torch.zeros_like(x["features"])})  # fmt: skip
    assert torch.equal(a, b)
    c, _ = model(**{**x, "candidates": torch.randint(2, 20, x["candidates"].shape)})
    assert not torch.equal(a, c), "it does read the candidates"


def test_image_only_never_reads_the_question() -> None:
    model = build_model(model_spec(20, (16, 3, 4), variant="image_only", embed_dim=8, hidden_dim=12, count=True)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "question": torch.randint(2, 20, x["question"].shape)})
    assert torch.equal(a, b)
    c, _ = model(**{**x, "features": torch.zeros_like(x["features"])})
    assert not torch.equal(a, c), "it does see the image"


def test_counting_path_sees_how_much_matches() -> None:
    """Softmax attention gives the same context for one matching cell as for three; the count path does not."""
    torch.manual_seed(0)
    model = build_model(model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10, count=True)).eval()
    x = batch(b=1)
    one = torch.zeros(1, 16, 3, 4)
    one[0, :, 0, 0] = 5.0
    three = one.clone()
    three[0, :, 1, 1] = 5.0
    three[0, :, 2, 3] = 5.0
    model.grid.where.weight.data.zero_()
    model.grid.where.bias.data.zero_()  # no position: the three bright cells look alike
    with torch.no_grad():
        gates = [torch.sigmoid(model(**{**x, "features": f.half()}, with_aux=True)[2].gates) for f in (one, three)]
    mass = [gate.sum(2) for gate in gates]  # [1, K, G]
    bright = gates[0][0, 0, 0]  # the gate of one bright cell, [G]: two more bright cells add twice that much
    assert torch.allclose(mass[1][0, 0] - mass[0][0, 0], 2 * (bright - gates[0][0, 0, 5]), atol=2e-3)
    a, _ = model(**{**x, "features": one.half()})
    b, _ = model(**{**x, "features": three.half()})
    assert not torch.allclose(a, b), "one and three matching cells score differently"


# ------------------------------------------------------------------------------------------------ pointing
@pytest.mark.parametrize("variant", ["attention", "no_attention", "image_only", "blind"])
def test_pointing_scores_boxes_in_every_variant(variant: str) -> None:
    model = build_model(model_spec(20, (16, 3, 4), variant=variant, task="pointing", embed_dim=8, hidden_dim=12,
                               attention_dim=10)).eval()  # fmt: skip
    x = {**batch(), "candidates": torch.ones(3, 4, 1, dtype=torch.long), "candidate_len": torch.ones(3, 4)}
    scores, attention = model(**x, boxes=boxes())
    assert scores.shape == (3, 4) and attention.shape == (3, 4, 2, 3, 4)
    moved = boxes()
    moved[:, 1] = torch.tensor([0.0, 0.6, 0.3, 0.9])
    again, _ = model(**x, boxes=moved)
    assert not torch.allclose(scores[:, 1], again[:, 1]) and torch.allclose(scores[:, 0], again[:, 0])
    if variant != "blind":  # what the box holds matters, except to the blind model
        other, _ = model(**{**x, "features": torch.rand_like(x["features"].float()).half()}, boxes=boxes())
        assert not torch.allclose(scores, other)
    with pytest.raises(ValueError, match="needs the candidates' boxes"):
        model(**x)
