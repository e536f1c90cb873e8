"""The multiple-choice VQA model: RNN question encoder, answer-conditioned attention over the CNN grid, scorer.

Following the seeds and the strong Visual7W models, the candidate answer is an *input*: each (image, question,
candidate) triple gets a score and the argmax wins. For candidate k:

    q      = RNN(embed(question))                      final state                        [B, Dq]   text.py
    a_k    = RNN(embed(candidate_k)) or mean(embed)    (pointing: the box, BoxEncoder)    [B, K, Da] text.py, grid.py
    v_ij   = ReLU(LN(W_f f_ij) + W_p (x_j, y_i))       cell + its position, added; + k x k context [I, N, D] grid.py
    h_ij   = tanh(W_v v_ij + W_s [q ; a_k])            the seeds' f_att MLP (or bilinear)           attention.py
    e_ij^g = w_g . h_ij,  att^g = softmax_ij(e^g),  c_k = [sum_ij att_ij^g v_ij]_g          [B, K, G*D]
    m_k^g  = sum_ij sigmoid(u_g . h_ij)                 counting path: unnormalised mass      [B, K, G] looks.py
             (with grounding boxes the gates learn each object's density: m = how many objects match)
    score_k = MLP([(P_c [c_k ; f(m_k)]) * (P_s [q ; a_k]) ; c_k ; f(m_k) ; q ; a_k])          [B, K]  scorer.py

The variants ``no_attention`` (c = mean of the cells), ``image_only`` (attention and scorer see the image and the
candidate, never the question), ``blind`` (no image) and ``answer_only`` (the candidate alone) exist to keep
results honest. ``net.py`` puts the parts together; ``spec.py`` says which; ``parts.py`` holds what a task's
candidates bring (text or boxes), which ``vqa.tasks`` chooses.
"""

from .attention import per_image_bmm
from .grid import BoxEncoder, relative_cells
from .net import VQAModel, init_embedding
from .spec import LAYOUT, ModelSpec
from .text import TextEncoder

__all__ = ["LAYOUT", "BoxEncoder", "ModelSpec", "TextEncoder", "VQAModel", "init_embedding", "per_image_bmm",
           "relative_cells"]  # fmt: skip
