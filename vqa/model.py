"""The multiple-choice VQA model: RNN question encoder, answer-conditioned attention over the CNN grid, scorer.

Following the seeds and the strong Visual7W models, the candidate answer is an *input*: each (image, question,
candidate) triple gets a score and the argmax wins. For candidate k:

    q      = RNN(embed(question))                      final state                        [B, Dq]
    a_k    = RNN(embed(candidate_k)) or mean(embed)                                       [B, K, Da]
    v_ij   = W_p [cnn_ij ; x_j ; y_i]                  grid cell + its normalised position [B, N, D]
    h_ij   = tanh(W_v v_ij + W_s [q ; a_k])            the seeds' f_att MLP
    e_ij^g = w_g . h_ij,  att^g = softmax_ij(e^g),  c_k = [sum_ij att_ij^g v_ij]_g          [B, K, G*D]
    m_k^g  = sum_ij sigmoid(u_g . h_ij)                 counting path: unnormalised mass      [B, K, G]
             (with grounding boxes the gates learn each object's density: m = how many objects match)
    score_k = MLP([(P_c [c_k ; f(m_k)]) * (P_s [q ; a_k]) ; c_k ; f(m_k) ; q ; a_k])          [B, K]

Without the (x, y) channels the grid is a bag of cells and "where" questions fall to chance. A softmax attention
sums to 1 over the cells whatever it looks at, so its context cannot tell one circle from three: the counting path
(``model.count``) gives the scorer how *much* of the image matches [question; candidate]. The variants
``no_attention`` (c = mean of the cells), ``image_only`` (attention and scorer see the image and the candidate,
never the question) and ``blind`` (no image) exist to keep results honest.
Nothing is cached on ``self`` during ``forward``: the same module serves training, evaluation and inspection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torchvision.ops import roi_align


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (saved beside every checkpoint)."""

    vocab_size: int
    grid: tuple[int, int, int]  # (C, H, W) of the features
    variant: str = "attention"
    rnn: str = "lstm"
    bidirectional: bool = False
    embed_dim: int = 300
    hidden_dim: int = 512
    answer_encoder: str = "rnn"
    glimpses: int = 2
    attention_dim: int = 512
    dropout: float = 0.3
    count: bool = False  # the counting path (False in checkpoints written before it existed)
    task: str = "telling"  # telling: candidates are text | pointing: candidates are boxes (``BoxEncoder``)
    attention: str = "additive"  # additive: tanh(W_v v + W_s s) | bilinear: tanh(W_v v) * tanh(W_s s) (MLB)
    question_glimpses: int = 0  # telling: glimpses driven by the question alone, shared by the candidates
    cell_context: int = 0  # > 0: each projected cell also sees its k x k neighbourhood (a grouped conv, residual)

    @classmethod
    def from_config(cls, cfg: Any, vocab_size: int, grid: tuple[int, int, int]) -> ModelSpec:
        m = cfg.model
        attention = m.attention
        if attention == "auto":  # bilinear wherever it can: pointing adds box offsets inside the additive tanh
            attention = "additive" if cfg.data.task == "pointing" else "bilinear"
        return cls(vocab_size, tuple(grid), m.variant, m.rnn, m.bidirectional, m.embed_dim, m.hidden_dim,
                   m.answer_encoder, m.glimpses, m.attention_dim, m.dropout, m.count, cfg.data.task,
                   attention, m.question_glimpses if cfg.data.task == "telling" else 0,
                   m.cell_context)  # fmt: skip

    @property
    def attends(self) -> bool:
        return self.variant in ("attention", "image_only")

    @property
    def sees_image(self) -> bool:
        return self.variant not in ("blind", "answer_only")

    @property
    def reads_question(self) -> bool:
        return self.variant not in ("image_only", "answer_only")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextEncoder(nn.Module):
    """Embedded token ids -> one vector per sequence: the RNN's final state at each sequence's last real token.

    Padding never changes it: a one-way RNN reads the padding only *after* that state, and a bidirectional one
    gets packed sequences. The one-way RNN runs on the padded batch when padding is at most half of it: PyTorch
    then projects every step's input in one GEMM, where packed sequences take one per step (on a CPU, packed
    cost 1.6-1.8x the time per real token: Visual7W-size questions and answers, LSTM 300 -> 512).
    """

    def __init__(self, kind: str, embed_dim: int, hidden_dim: int, bidirectional: bool) -> None:
        super().__init__()
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn(embed_dim, hidden_dim, batch_first=True, bidirectional=bidirectional)
        self.out_dim = hidden_dim * (2 if bidirectional else 1)

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # emb [S, L, E], lengths [S] (>= 1)
        # (not under CPU autocast: oneDNN has no bf16 RNN primitive on CPUs without AVX512-BF16)
        cpu_autocast = emb.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        if not self.rnn.bidirectional and not cpu_autocast and emb.shape[0] * emb.shape[1] <= 2 * int(lengths.sum()):
            out, _ = self.rnn(emb)  # [S, L, H]: the state after every step
            return out[torch.arange(emb.shape[0], device=emb.device), lengths.to(emb.device) - 1]  # [S, H]
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # [layers * dirs, S, H]
        return torch.cat([h[-2], h[-1]], dim=-1) if self.rnn.bidirectional else h[-1]  # [S, out_dim]


class BoxEncoder(nn.Module):
    """Pointing: a candidate box -> ``[.., out_dim]``, from where it is and what the grid holds inside it.

    Geometry: (x0, y0, x1, y1, width, height, area) in [0, 1] of the image, through an MLP. Content: the projected
    grid cells (with their position channels) ``roi_align``-pooled over the box onto ROI x ROI bins, flattened and
    projected; the blind variant has geometry only. A box's name and id never get here.
    """

    ROI = 2  # bins per side: a box is 1-3 cells of a 7x7 grid

    def __init__(self, cell_dim: int | None, out_dim: int) -> None:
        super().__init__()
        self.geometry = nn.Sequential(nn.Linear(7, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        self.content = nn.Linear(cell_dim * self.ROI**2, out_dim) if cell_dim else None
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, boxes: torch.Tensor, cells: torch.Tensor | None, image_index: torch.Tensor | None,
                grid_hw: tuple[int, int]) -> torch.Tensor:  # fmt: skip
        # boxes [B, K, 4] (x0, y0, x1, y1) in [0, 1]; cells [I, H*W, D]; image_index [B] (None: I = B)
        b, k, _ = boxes.shape
        x0, y0, x1, y1 = boxes.float().unbind(-1)
        out = self.geometry(torch.stack([x0, y0, x1, y1, x1 - x0, y1 - y0, (x1 - x0) * (y1 - y0)], dim=-1))
        if self.content is not None and cells is not None:
            h, w = grid_hw
            fmap = cells.transpose(1, 2).reshape(cells.shape[0], -1, h, w)  # [I, D, H, W]
            index = image_index if image_index is not None else torch.arange(b, device=boxes.device)
            scale = torch.tensor([w, h, w, h], dtype=fmap.dtype, device=boxes.device)  # to grid units
            rois = torch.cat([index.repeat_interleave(k)[:, None].to(fmap.dtype),
                              boxes.reshape(b * k, 4).to(fmap.dtype) * scale], dim=1)  # [B*K, 5]  # fmt: skip
            pooled = roi_align(fmap, rois, output_size=self.ROI, spatial_scale=1.0, sampling_ratio=2, aligned=True)
            out = out + self.content(pooled.flatten(1)).view(b, k, -1)  # [B, K, out]
        return self.norm(out)  # [B, K, out]


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))  # fmt: skip


class VQAModel(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c, _, _ = spec.grid
        self.embed = nn.Embedding(spec.vocab_size, spec.embed_dim, padding_idx=0)
        # image_only and answer_only never read the question: no encoder at all (an unused one would upset DDP)
        self.question = (TextEncoder(spec.rnn, spec.embed_dim, spec.hidden_dim, spec.bidirectional)
                         if spec.reads_question else None)  # fmt: skip
        self.answer = (TextEncoder(spec.rnn, spec.embed_dim, spec.hidden_dim, spec.bidirectional)
                       if spec.answer_encoder == "rnn" and spec.task == "telling" else None)  # fmt: skip
        q_dim = self.question.out_dim if self.question is not None else 0
        a_dim = self.answer.out_dim if self.answer is not None else spec.embed_dim
        d = spec.attention_dim
        if spec.task == "pointing" and spec.attention != "additive":
            raise ValueError("pointing needs additive attention: each cell's offset from the box joins inside the tanh")
        self.boxes = None
        if spec.task == "pointing":  # candidates are boxes: encoded from the grid and their geometry
            a_dim = spec.hidden_dim
            self.boxes = BoxEncoder(d if spec.sees_image else None, a_dim)
        ctx_dim = 0
        if spec.sees_image:
            self.cells = nn.Sequential(nn.Linear(c, d), nn.LayerNorm(d))  # cell features -> [.., D]
            self.where = nn.Linear(2, d)  # (x, y) -> [.., D], added: position on the same scale as content
            k = spec.cell_context
            self.context = nn.Conv2d(d, d, k, padding=k // 2, groups=8) if k else None
            ctx_dim = d
        self.att_r = self.seek_q = None  # pointing only (relative offsets; the question's own glimpse)
        if spec.attends:
            self.att_v = nn.Linear(d, d, bias=False)
            self.att_s = nn.Linear(q_dim + a_dim, d)
            self.att_w = nn.Linear(d, spec.glimpses)
            ctx_dim = d * spec.glimpses
            if spec.task == "pointing":  # where each cell lies relative to the candidate box ("left of the X")
                self.att_r = nn.Linear(3, d, bias=False)
                # and where the attended cells lie from the box, summed like the context: [B, K, G*3] -> [B, K, D]
                self.relate = nn.Sequential(nn.Linear(3 * spec.glimpses, d), nn.ReLU(), nn.Linear(d, d))
                ctx_dim += d
                if q_dim:  # a glimpse driven by the question alone: what it names, wherever the candidates are
                    self.seek_q = nn.Linear(q_dim, d)
                    self.seek_w = nn.Linear(d, 1)
                    self.placed = nn.Sequential(nn.Linear(3, d), nn.ReLU(), nn.Linear(d, d))
                    ctx_dim += d
        # telling: glimpses driven by the question alone, the same for every candidate. Why: a candidate-driven
        # attention can find evidence for *each* candidate ("Red." looks at the red object, "Blue." at the blue one)
        # when every candidate is something the image shows; without grounding boxes it learns exactly that and
        # stalls at chance. The question's own glimpse must find what the question is about.
        gq = spec.question_glimpses if spec.attends and q_dim else 0
        self.seek_t = self.seek_tw = None
        if gq:
            self.seek_t = nn.Linear(q_dim, d)
            self.seek_tw = nn.Linear(d, gq)  # attention logits
            ctx_dim += d * gq
        self.counter = self.count_w = self.gate = None
        if spec.attends and spec.count:
            # most cells hold no object: start the gates near 0.02, not 0.5 (RetinaNet's prior), or their first
            # mass is ~N/2 whatever the image and the first epochs go to unlearning it
            if gq:  # the question's glimpses count too: gate = sigmoid(a * e + b) of their own attention logits e
                self.gate = nn.Parameter(torch.tensor([[1.0] * gq, [-4.0] * gq]))  # [2, Gq]: (a, b) per glimpse
            else:
                self.count_w = nn.Linear(d, spec.glimpses)  # per-cell "this cell matches" logits, one per glimpse
                nn.init.constant_(self.count_w.bias, -4.0)
            self.counter = nn.Sequential(nn.Linear(2 * (gq or spec.glimpses), d), nn.ReLU(), nn.Linear(d, d))  # f(m)
            ctx_dim += d
        self.drop = nn.Dropout(spec.dropout)
        # the fused term (P_c c) * (P_s [q; a]) lets the scorer *compare* what it saw with what the candidate says;
        # an MLP over the concatenation alone has to learn that product from ReLUs and learns it very slowly
        self.fuse_c = nn.Linear(ctx_dim, spec.hidden_dim) if ctx_dim else None
        self.fuse_s = nn.Linear(q_dim + a_dim, spec.hidden_dim) if ctx_dim else None
        fused_dim = spec.hidden_dim if ctx_dim else 0
        # pointing: the candidate *is* image content (its box), so the question is compared with it directly
        self.fuse_q = self.fuse_a = None
        if spec.task == "pointing" and q_dim:
            self.fuse_q, self.fuse_a = nn.Linear(q_dim, spec.hidden_dim), nn.Linear(a_dim, spec.hidden_dim)
            fused_dim += spec.hidden_dim
        self.scorer = _mlp(fused_dim + ctx_dim + q_dim + a_dim, 2 * spec.hidden_dim, 1, spec.dropout)

    # ---------------------------------------------------------------------------------------------- parts
    def encode_answers(self, candidates: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, k, la = candidates.shape  # [B, K, La], lengths [B, K]
        emb = self.embed(candidates.view(b * k, la))  # [B*K, La, E]
        if self.answer is not None:
            return self.answer(emb, lengths.view(-1)).view(b, k, -1)  # [B, K, Da]
        mask = (candidates.view(b * k, la) != 0).unsqueeze(-1).to(emb.dtype)  # [B*K, La, 1]
        return ((emb * mask).sum(1) / mask.sum(1).clamp(min=1)).view(b, k, -1)  # [B, K, E]

    def grid_cells(self, features: torch.Tensor) -> torch.Tensor:
        """[I, C, H, W] -> [I, H*W, D]: v_ij = ReLU(LayerNorm(W_f f_ij) + W_p (x_j, y_i)), coordinates in [-1, 1].

        LayerNorm puts the cells on one scale whatever the CNN; without it their projection is tiny next to the
        query, the attention logits barely differ between cells, and attention takes many epochs to start.
        Dropout acts on the projected cells (D values per cell), not on the raw C-channel grid: a mask per raw
        element cost a fifth of a training step on the CPU (C = 1344..2048 against D = 256..512).
        """
        h, w = features.shape[2:]
        ys = (torch.arange(h, device=features.device, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=features.device, dtype=torch.float32) + 0.5) / w * 2 - 1
        pos = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).view(h * w, 2)  # [N, 2]: (x, y)
        cells = F.relu(self.cells(features.flatten(2).transpose(1, 2).float()) + self.where(pos))  # [I, N, D]
        if self.context is not None:  # a glyph spans several cells of a 14 x 14 grid: let each see its neighbours
            grid = cells.transpose(1, 2).reshape(-1, cells.shape[2], h, w)  # [I, D, H, W]
            cells = cells + F.relu(self.context(grid)).flatten(2).transpose(1, 2)  # [I, N, D]
        return self.drop(cells)  # [I, N, D]

    # ---------------------------------------------------------------------------------------------- forward
    def forward(
        self, features: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor, candidates: torch.Tensor,
        candidate_len: torch.Tensor, image_index: torch.Tensor | None = None, with_gates: bool = False,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """features [I, C, H, W], question [B, Lq], question_len [B], candidates [B, K, La], candidate_len [B, K],
        image_index [B] (question b asks about image image_index[b]; None: I = B, one image per question)
        -> scores [B, K], attention [B, K, G, H, W] (uniform for the variants that do not attend), and with
        ``with_gates`` the counting-gate logits [B, K, H*W, G] (None without the counting path), for their loss.
        Pointing: ``boxes`` [B, K, 4] are the candidates (``candidates`` holds one [UNK] each and is not read).

        Why ``image_index``: Visual7W asks 2.4 questions per image (the demo 5); projecting each image's grid once
        and broadcasting it to its questions saves the largest GEMM of the step and the store reads.
        """
        b, k = candidates.shape[:2]
        _, h, w = self.spec.grid
        g = self.spec.glimpses
        if self.question is not None:
            q = self.drop(self.question(self.embed(question), question_len))  # [B, Dq]
        else:  # image_only: the question is never read
            q = candidates.new_zeros(b, 0, dtype=torch.float32)  # [B, 0]
        if self.boxes is None:  # (before the grid: the dropout masks come in the order they always did)
            a = self.drop(self.encode_answers(candidates, candidate_len))  # [B, K, Da]
        v_img = self.grid_cells(features) if self.spec.sees_image else None  # [I, N, D]
        if self.boxes is not None:
            if boxes is None:
                raise ValueError("a pointing model needs the candidates' boxes [B, K, 4]")
            a = self.drop(self.boxes(boxes, v_img, image_index, (h, w)))  # [B, K, Da]
        qk = q.unsqueeze(1).expand(-1, k, -1)  # [B, K, Dq]
        att = torch.full((b, k, h * w, g), 1.0 / (h * w), device=a.device)  # [B, K, N, G]
        gates = None
        if v_img is None:  # blind
            ctx = a.new_zeros(b, k, 0)
        else:
            if self.spec.variant == "no_attention":
                ctx = v_img.mean(1) if image_index is None else v_img.mean(1)[image_index]  # [B, D]
                ctx = ctx.unsqueeze(1).expand(-1, k, -1)  # [B, K, D]
            else:
                s = self.att_s(torch.cat([qk, a], dim=-1))  # [B, K, D]
                proj = self.att_v(v_img)  # [I, N, D]
                rel = relative_cells(boxes, h, w) if self.att_r is not None else None  # pointing: [B, K, N, 3]
                if self.spec.attention == "bilinear":
                    logits = self.bilinear_logits(proj, s, image_index).float()  # [B, K, N, G or 2G]
                else:
                    proj = proj if image_index is None else proj[image_index]  # [B, N, D]
                    pre = proj.unsqueeze(1) + s.unsqueeze(2)  # [B, K, N, D]
                    if rel is not None:  # + each cell's offset from each candidate box
                        pre = pre + self.att_r(rel)  # [B, K, N, D]
                    weight, bias = self.heads()
                    logits = F.linear(torch.tanh(pre), weight, bias).float()  # [B, K, N, G or 2G]
                att = F.softmax(logits[..., :g], dim=2)  # [B, K, N, G], over the N cells
                rows = att.to(v_img.dtype).permute(0, 1, 3, 2).reshape(b, k * g, h * w)  # [B, K*G, N]
                ctx = per_image_bmm(v_img.transpose(1, 2), rows, image_index)  # [B, D, K*G]: sum_n att v_n
                ctx = ctx.transpose(1, 2).reshape(b, k, -1)  # [B, K, G*D]
                if rel is not None:  # where what it found lies from the box: "is the red star right of me?"
                    offset = torch.einsum("bkng,bknr->bkgr", att, rel).flatten(2)  # [B, K, G*3]
                    ctx = torch.cat([ctx, self.relate(offset).to(ctx.dtype)], dim=-1)  # [B, K, G*D + D]
                    if self.seek_q is not None:  # the question's own glimpse, and where it lies from each box
                        seek = torch.tanh(proj + self.seek_q(q).unsqueeze(1))  # [B, N, D]
                        att_q = F.softmax(self.seek_w(seek).squeeze(-1).float(), dim=1)  # [B, N]
                        placed = torch.einsum("bn,bknr->bkr", att_q, rel)  # [B, K, 3]: (dx, dy, share inside)
                        ctx = torch.cat([ctx, self.placed(placed).to(ctx.dtype)], dim=-1)  # [B, K, .. + D]
                if self.seek_t is not None:  # the question's own glimpses: [B, K, G + Gq, H, W] maps in all
                    att_q, ctx_q, gates = self.question_glimpses(proj, v_img, q, image_index, k)
                    att = torch.cat([att, att_q], dim=-1)  # [B, K, N, G + Gq]
                    ctx = torch.cat([ctx, ctx_q], dim=-1)  # [B, K, G*D + Gq*D]
                elif self.counter is not None:
                    gates = logits[..., g:]  # [B, K, N, G] counting-gate logits
                if self.counter is not None:
                    ctx = torch.cat([ctx, self.count_features(gates).to(ctx.dtype)], dim=-1)  # [B, K, .. + D]
        parts = [ctx, qk, a]
        if self.fuse_c is not None:
            qa = torch.cat([qk, a], dim=-1)  # [B, K, Dq+Da]
            parts.insert(0, torch.tanh(self.fuse_c(ctx)) * torch.tanh(self.fuse_s(qa)))  # [B, K, hidden]
        if self.fuse_q is not None:  # pointing: does what the box holds match what the question asks for?
            parts.insert(0, torch.tanh(self.fuse_q(qk)) * torch.tanh(self.fuse_a(a)))  # [B, K, hidden]
        scores = self.scorer(torch.cat(parts, dim=-1)).squeeze(-1)  # [B, K]
        attention = att.permute(0, 1, 3, 2).reshape(b, k, -1, h, w).float()
        return (scores.float(), attention, gates) if with_gates else (scores.float(), attention)

    def heads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-cell heads as one [J, D] weight and [J] bias: G attention logits, then G counting-gate logits
        with the counting path. One product for both: each alone is a thin [.., D] x [D, G] product."""
        if self.count_w is None:
            return self.att_w.weight, self.att_w.bias
        return torch.cat([self.att_w.weight, self.count_w.weight]), torch.cat([self.att_w.bias, self.count_w.bias])

    def question_glimpses(self, proj: torch.Tensor, v_img: torch.Tensor, q: torch.Tensor,
                          image_index: torch.Tensor | None, k: int) -> tuple[torch.Tensor, ...]:  # fmt: skip
        """Glimpses driven by the question alone: proj [I, N, D] (W_v v), v_img [I, N, D], q [B, Dq] ->
        attention [B, K, N, Gq], context [B, K, Gq*D] and counting-gate logits [B, K, N, Gq] (None without the
        counting path), each the same for the K candidates."""
        gq = self.spec.question_glimpses
        s = self.seek_t(q)  # [B, D]
        if self.spec.attention == "bilinear":
            rows = torch.tanh(s).unsqueeze(1) * self.seek_tw.weight  # [B, Jq, D]
            logits = per_image_bmm(torch.tanh(proj), rows, image_index) + self.seek_tw.bias  # [B, N, Jq]
        else:
            proj = proj if image_index is None else proj[image_index]  # [B, N, D]
            logits = self.seek_tw(torch.tanh(proj + s.unsqueeze(1)))  # [B, N, Jq]
        logits = logits.float()
        att = F.softmax(logits[..., :gq], dim=1)  # [B, N, Gq]
        ctx = per_image_bmm(v_img.transpose(1, 2), att.to(v_img.dtype).transpose(1, 2), image_index)  # [B, D, Gq]
        ctx = ctx.transpose(1, 2).reshape(q.shape[0], 1, -1).expand(-1, k, -1)  # [B, K, Gq*D]
        gates = None
        if self.gate is not None:  # what the question is about, counted: the same logits that place the glimpse
            gates = (logits * self.gate[0] + self.gate[1]).unsqueeze(1).expand(-1, k, -1, -1)  # [B, K, N, Gq]
        return att.unsqueeze(1).expand(-1, k, -1, -1), ctx, gates

    def bilinear_logits(self, proj: torch.Tensor, s: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
        """[I, N, D] projected cells, [B, K, D] projected [q; a_k] -> [B, K, N, J] head logits of the bilinear
        (MLB, Kim et al. 2017) hidden state h_kn = tanh(W_v v_n) * tanh(s_k).

        Why: the additive tanh(W_v v_n + s_k) is a [B, K, N, D] tensor (K candidates x N cells x D) whose tanh,
        its backward and the thin head product that reads it took a quarter of a Visual7W training step on a
        CPU. The product factorises: w . (x_n * y_k) = x_n . (y_k * w), so the logits are one batched GEMM of
        each question's [N, D] cells with its [D, K*J] candidate-weighted heads, and tanh runs on [I, N, D] once.
        """
        b, k, d = s.shape
        weight, bias = self.heads()  # [J, D], [J]
        per_candidate = torch.tanh(s).unsqueeze(2) * weight  # [B, K, J, D]
        logits = per_image_bmm(torch.tanh(proj), per_candidate.view(b, -1, d), image_index)  # [B, N, K*J]
        return logits.view(b, -1, k, weight.shape[0]).transpose(1, 2) + bias  # [B, K, N, J]

    def count_features(self, gates: torch.Tensor) -> torch.Tensor:
        """[B, K, N, G] gate logits -> [B, K, D]: f(m), m = sum over cells of the sigmoid gates.

        Unlike the softmax, the sigmoid gates are not normalised: two matching objects light twice the cells of
        one, and m says so (with grounding boxes, training pulls each object's gates to a mass of 1). Fed as
        (m / 4, log(1 + m)) so small and large counts are both on a usable scale.
        """
        mass = torch.sigmoid(gates).sum(2)  # [B, K, G]
        return self.counter(torch.cat([mass / 4, torch.log1p(mass)], dim=-1))  # [B, K, D]


def per_image_bmm(images: torch.Tensor, rows: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
    """images [I, P, D], rows [B, R, D], image_index [B] (None: I = B) -> [B, P, R]: for every question b,
    images[image_index[b]] @ rows[b].T.

    Why not gather ``images[image_index]`` first: that copies an image's [P, D] grid for each of its questions
    ([B, N, D] written, and scattered back in the backward). Here each image's questions' small [R, D] rows are
    stacked in per-image slots, and one bmm over the I images multiplies each grid once by all of them.
    """
    if image_index is None:
        return torch.bmm(images, rows.transpose(1, 2))  # [B, P, R]
    same = image_index[:, None] == image_index[None, :]  # [B, B]
    slot = torch.tril(same, diagonal=-1).sum(1)  # [B]: earlier questions of the batch about the same image
    n_slots = int(slot.max()) + 1
    (i, p, d), r = images.shape, rows.shape[1]
    stacked = rows.new_zeros(i, n_slots, r, d).index_put((image_index, slot), rows)  # [I, slots, R, D]
    out = torch.bmm(images, stacked.view(i, n_slots * r, d).transpose(1, 2))  # [I, P, slots*R]
    return out.view(i, p, n_slots, r)[image_index, :, slot]  # [B, P, R]


def relative_cells(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, K, 4] boxes (x0, y0, x1, y1 in [0, 1]) -> [B, K, H*W, 3]: every grid cell's centre relative to each box
    (dx, dy from the box centre, in image halves) and whether it lies inside the box.

    Why: "Which object is left of the red star?" is answered by the candidate whose right neighbour is the red
    star. With these offsets inside the attention MLP, the attention of a candidate can look *next to it* in the
    direction the question names; additive cell positions alone cannot express "one cell right of this box"."""
    ys = (torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5) / w
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    cx, cy = cx.reshape(1, 1, -1), cy.reshape(1, 1, -1)  # [1, 1, N]
    x0, y0, x1, y1 = (t.unsqueeze(-1) for t in boxes.float().unbind(-1))  # [B, K, 1] each
    inside = ((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)).float()
    return torch.stack([2 * (cx - (x0 + x1) / 2), 2 * (cy - (y0 + y1) / 2), inside], dim=-1)  # [B, K, N, 3]


def init_embedding(model: VQAModel, vectors: torch.Tensor, found: torch.Tensor) -> None:
    """Copy pretrained vectors into the embedding for the words that have one; the rest keep their random init."""
    with torch.no_grad():
        model.embed.weight[found] = vectors[found].to(model.embed.weight.dtype)
        model.embed.weight[0].zero_()  # PAD
