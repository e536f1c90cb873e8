"""Model shapes for every variant, attention is a distribution, nothing is cached between calls."""

from __future__ import annotations

import pytest
import torch

from vqa.model import ModelSpec, TextEncoder, VQAModel, per_image_bmm


def batch(b: int = 3, c: int = 16, h: int = 3, w: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features": torch.rand(b, c, h, w, generator=g).half(),
        "question": torch.randint(2, 20, (b, 7), generator=g),
        "question_len": torch.tensor([7, 3, 1][:b]),
        "candidates": torch.randint(2, 20, (b, 4, 5), generator=g),
        "candidate_len": torch.randint(1, 6, (b, 4), generator=g),
    }


@pytest.mark.parametrize("attention", ["additive", "bilinear"])
@pytest.mark.parametrize(("count", "question_glimpses"), [(False, 0), (True, 0), (True, 1)])
@pytest.mark.parametrize("variant", ["attention", "no_attention", "image_only", "blind", "answer_only"])
@pytest.mark.parametrize(("rnn", "bidirectional", "answer_encoder"), [("lstm", False, "rnn"), ("gru", True, "mean")])
def test_shapes_of_every_variant(variant: str, rnn: str, bidirectional: bool, answer_encoder: str,
                                 count: bool, question_glimpses: int, attention: str) -> None:  # fmt: skip
    dims = {"embed_dim": 8, "hidden_dim": 12, "attention_dim": 10, "glimpses": 2}
    spec = ModelSpec(20, (16, 3, 4), variant=variant, rnn=rnn, bidirectional=bidirectional,
                     answer_encoder=answer_encoder, count=count, attention=attention,
                     question_glimpses=question_glimpses, **dims)  # fmt: skip
    model = VQAModel(spec).eval()
    scores, attention = model(**batch())
    g = 2 + (question_glimpses if variant == "attention" else 0)  # image_only has no question to drive a glimpse
    assert scores.shape == (3, 4) and attention.shape == (3, 4, g, 3, 4)
    assert torch.allclose(attention.sum((-2, -1)), torch.ones(3, 4, g), atol=1e-5)
    if variant in ("no_attention", "blind", "answer_only"):
        assert torch.allclose(attention, torch.full_like(attention, 1 / 12))
    again, _ = model(**batch())
    assert torch.equal(scores, again), "eval-mode forward is a pure function of its inputs"
    _, _, gates = model(**batch(), with_gates=True)
    counts = count and variant in ("attention", "image_only")
    gate_glimpses = question_glimpses if variant == "attention" and question_glimpses else 2
    assert (gates.shape == (3, 4, 12, gate_glimpses)) if counts else gates is None, "gate logits [B, K, H*W, G]"
    scores.sum().backward()


@pytest.mark.parametrize(("kind", "bidirectional"), [("lstm", False), ("gru", False), ("lstm", True)])
@pytest.mark.parametrize("lengths", [[5, 4, 3, 5], [8, 1, 1, 2]], ids=["padded path", "packed path"])
def test_text_encoder_state_is_that_of_the_unpadded_sequence(kind: str, bidirectional: bool,
                                                             lengths: list[int]) -> None:  # fmt: skip
    """Whether the batch runs padded or packed, each sequence's vector is its final state without any padding."""
    torch.manual_seed(0)
    enc = TextEncoder(kind, 6, 5, bidirectional).eval()
    emb = torch.randn(len(lengths), max(lengths), 6)
    with torch.no_grad():
        batched = enc(emb, torch.tensor(lengths))
        alone = torch.cat([enc(emb[i : i + 1, :n], torch.tensor([n])) for i, n in enumerate(lengths)])
    torch.testing.assert_close(batched, alone)


@pytest.mark.parametrize("attention", ["additive", "bilinear"])
def test_training_step_runs_under_cpu_bf16_autocast(attention: str) -> None:
    """train.mixed_precision=bf16 on a CPU: every op must have a bf16 (or fp32 fallback) kernel, whatever the CPU
    (oneDNN's fused RNN layer has no bf16 primitive without AVX512-BF16)."""
    model = VQAModel(ModelSpec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10, count=True,
                               attention=attention))  # fmt: skip
    x = {**batch(), "question_len": torch.tensor([7, 6, 5])}  # padding under half: the padded RNN path
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, _ = model(**x)
    scores.float().sum().backward()
    assert torch.isfinite(scores).all() and model.cells[0].weight.grad is not None


def test_attention_depends_on_the_candidate_and_on_position() -> None:
    torch.manual_seed(0)
    model = VQAModel(ModelSpec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10)).eval()
    x = batch()
    _, attention = model(**x)
    assert not torch.allclose(attention[:, 0], attention[:, 1]), "each candidate has its own attention"
    same = {**x, "features": torch.ones_like(x["features"])}  # identical cells: only position tells them apart
    _, flat = model(**same)
    assert flat[0, 0, 0].std() > 0, "the grid carries position information"


def test_bilinear_logits_are_the_factorised_mlb_attention() -> None:
    """logits_kn = W (tanh(P v_n) * tanh(s_k)) + b, computed as one GEMM per question without the [B, K, N, D]
    hidden state; with shared grids (image_index) each question reads its own image's cells."""
    torch.manual_seed(0)
    model = VQAModel(ModelSpec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10, count=True,
                               attention="bilinear")).eval()  # fmt: skip
    proj, s = torch.randn(2, 12, 10), torch.randn(3, 4, 10)  # [I, N, D], [B, K, D]
    index = torch.tensor([1, 0, 1])
    weight, bias = model.heads()  # [2G, D]: attention and counting heads
    hidden = torch.tanh(proj[index]).unsqueeze(1) * torch.tanh(s).unsqueeze(2)  # [B, K, N, D]
    torch.testing.assert_close(model.bilinear_logits(proj, s, index), hidden @ weight.T + bias)
    torch.testing.assert_close(model.bilinear_logits(proj[index], s, None), hidden @ weight.T + bias)
    _, attention = model(**batch())
    assert not torch.allclose(attention[:, 0], attention[:, 1]), "each candidate has its own attention"


def test_per_image_bmm_multiplies_each_question_by_its_own_image() -> None:
    torch.manual_seed(0)
    images, rows = torch.randn(3, 5, 4), torch.randn(6, 2, 4)  # [I, P, D], [B, R, D]
    index = torch.tensor([2, 0, 2, 1, 2, 0])  # image 2 has three questions, not next to each other
    expected = torch.bmm(images[index], rows.transpose(1, 2))  # [B, P, R]
    torch.testing.assert_close(per_image_bmm(images, rows, index), expected)
    torch.testing.assert_close(per_image_bmm(images[index], rows, None), expected)


def test_pointing_refuses_bilinear_attention() -> None:
    with pytest.raises(ValueError, match="pointing needs additive"):
        VQAModel(ModelSpec(20, (16, 3, 4), task="pointing", attention="bilinear"))


def test_auto_attention_is_bilinear_for_telling_and_additive_for_pointing() -> None:
    from vqa.config import load_config

    spec = lambda *o: ModelSpec.from_config(load_config(None, list(o)), 20, (16, 3, 4))  # noqa: E731
    assert spec().attention == "bilinear" and spec("data.task=pointing").attention == "additive"
    assert spec("model.attention=additive").attention == "additive"


def test_blind_ignores_the_image() -> None:
    model = VQAModel(ModelSpec(20, (16, 3, 4), variant="blind", embed_dim=8, hidden_dim=12)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "features": torch.zeros_like(x["features"])})
    assert torch.equal(a, b)


def test_answer_only_reads_nothing_but_the_candidates() -> None:
    """Visual7W's distractors are known to leak the answer (Chao et al., NAACL 2018): this baseline sees the
    candidate alone, no question and no image."""
    model = VQAModel(ModelSpec(20, (16, 3, 4), variant="answer_only", embed_dim=8, hidden_dim=12)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "question": torch.randint(2, 20, x["question"].shape),
                    "features": torch.zeros_like(x["features"])})  # fmt: skip
    assert torch.equal(a, b)
    c, _ = model(**{**x, "candidates": torch.randint(2, 20, x["candidates"].shape)})
    assert not torch.equal(a, c), "it does read the candidates"


def test_image_only_never_reads_the_question() -> None:
    model = VQAModel(ModelSpec(20, (16, 3, 4), variant="image_only", embed_dim=8, hidden_dim=12, count=True)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "question": torch.randint(2, 20, x["question"].shape)})
    assert torch.equal(a, b)
    c, _ = model(**{**x, "features": torch.zeros_like(x["features"])})
    assert not torch.equal(a, c), "it does see the image"


def test_counting_path_sees_how_much_matches() -> None:
    """Softmax attention gives the same context for one matching cell as for three; the count path does not."""
    torch.manual_seed(0)
    model = VQAModel(ModelSpec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10, count=True)).eval()
    x = batch(b=1)
    one = torch.zeros(1, 16, 3, 4)
    one[0, :, 0, 0] = 5.0
    three = one.clone()
    three[0, :, 1, 1] = 5.0
    three[0, :, 2, 3] = 5.0
    model.where.weight.data.zero_()
    model.where.bias.data.zero_()  # no position: the three bright cells look alike
    with torch.no_grad():
        cells = [model.grid_cells(f.half()) for f in (one, three)]
        q = model.question(model.embed(x["question"]), x["question_len"])
        s = model.att_s(torch.cat([q.unsqueeze(1).expand(-1, 4, -1),
                                   model.encode_answers(x["candidates"], x["candidate_len"])], -1))  # fmt: skip
        hidden = [torch.tanh(model.att_v(v).unsqueeze(1) + s.unsqueeze(2)) for v in cells]
        gates = [torch.sigmoid(model.count_w(h)) for h in hidden]  # [1, K, N, G]
    mass = [gate.sum(2) for gate in gates]
    bright = gates[0][0, 0, 0]  # the gate of one bright cell, [G]: two more bright cells add twice that much
    assert torch.allclose(mass[1][0, 0] - mass[0][0, 0], 2 * (bright - gates[0][0, 0, 5]), atol=2e-3)
    a, _ = model(**{**x, "features": one.half()})
    b, _ = model(**{**x, "features": three.half()})
    assert not torch.allclose(a, b), "one and three matching cells score differently"


# ------------------------------------------------------------------------------------------------ pointing
def boxes(b: int = 3) -> torch.Tensor:
    """[B, 4, 4] candidate boxes (x0, y0, x1, y1) in [0, 1]: four distinct boxes per question."""
    base = torch.tensor([[0.0, 0.0, 0.3, 0.3], [0.6, 0.1, 0.9, 0.5], [0.3, 0.6, 0.7, 1.0], [0.1, 0.4, 0.4, 0.7]])
    return base.expand(b, 4, 4).clone()


@pytest.mark.parametrize("variant", ["attention", "no_attention", "image_only", "blind"])
def test_pointing_scores_boxes_in_every_variant(variant: str) -> None:
    model = VQAModel(ModelSpec(20, (16, 3, 4), variant=variant, task="pointing", embed_dim=8, hidden_dim=12,
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


def test_relative_cells_say_where_each_cell_lies_from_the_box() -> None:
    from vqa.model import relative_cells

    rel = relative_cells(torch.tensor([[[0.0, 0.0, 0.34, 0.34]]]), 3, 3)  # the top-left cell of a 3x3 grid
    assert rel.shape == (1, 1, 9, 3)
    dx, dy, inside = rel[0, 0].unbind(-1)
    assert inside.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert dx[1] > 0 and dy[1] == pytest.approx(0, abs=0.02)  # the cell right of it: same row, to the right
    assert dy[3] > 0 and dx[3] == pytest.approx(0, abs=0.02)  # the cell below it
