"""1 process vs 2 real processes (``torchrun --nproc_per_node 2``, gloo on CPU): evaluation gives identical
predictions, training with the same global batch gives the same model within float tolerance.

Both sides run with one thread per process (torchrun's default), so differences come only from the process split.
(Feature extraction has its own 1-vs-2 test in test_features_cli.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import REPO

from vqa.config import load_config
from vqa.evaluation.evaluate import evaluate

pytestmark = pytest.mark.slow
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


def stage(name: str, *args: str, two: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *(TORCHRUN if two else ()), f"pipelines/{name}.py", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def private_copy(trained_run: list[str], dest: Path) -> list[str]:
    src = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2])
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("eval", "inspect", "predict"))
    return [*(o for o in trained_run if not o.startswith("run.dir=")), f"run.dir={dest}"]


def rounded(x: object) -> object:
    """JSON values with every float rounded to 6 decimals."""
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return round(x, 6) if isinstance(x, float) else x


def test_eval_on_two_processes_equals_one(trained_run, tmp_path: Path) -> None:
    args = [*private_copy(trained_run, tmp_path / "run"), "eval.split=test", "eval.batch_size=5"]
    out = tmp_path / "run" / "eval" / "test"
    stage("evaluate", *args)
    one = {name: (out / name).read_text() for name in ("predictions.json", "per_question.jsonl", "metrics.json")}
    stage("evaluate", *args, two=True)
    two = {name: (out / name).read_text() for name in one}
    m1, m2 = json.loads(one.pop("metrics.json")), json.loads(two.pop("metrics.json"))
    assert (m1["processes"], m2["processes"]) == (1, 2), "the second run really had world size 2"
    n = m1["n"]
    assert n % 10, f"{n} questions: the last batch must be uneven across 2 x 5 to test padding"
    ids = [json.loads(line)["qa_id"] for line in two["per_question.jsonl"].splitlines()]
    assert len(ids) == len(set(ids)) == n, "no qa_id duplicated or dropped by the uneven last batch"
    assert one["predictions.json"] == two["predictions.json"], "the same choices, in the same results file"
    rows1, rows2 = ([json.loads(line) for line in d["per_question.jsonl"].splitlines()] for d in (one, two))
    scores1, scores2 = ([[c.pop("score") for c in r["candidates"]] for r in rows] for rows in (rows1, rows2))
    assert rows1 == rows2, "the same questions, candidates, choices and verdicts"
    # scores not bit for bit: the last batch is padded with other questions on 2 processes, and a CPU GEMM may
    # round a row differently when the batch holds other rows (seen with 4 vs 12 rows here). A score is a sum of
    # ~10^3 fp32 products: a few units in the last place of |score| <= 10, i.e. 1e-5 at most.
    np.testing.assert_allclose(np.array(scores1), np.array(scores2), rtol=1e-6, atol=1e-5)
    assert rounded({k: v for k, v in m1.items() if k != "processes"}) == rounded(
        {k: v for k, v in m2.items() if k != "processes"}), "the same metrics (grounding mass to 1e-6)"


# The matching loss is off: its negatives are the other images of each process's own share of the batch (as in
# CLIP without a gather), so 1 and 2 processes contrast against other images by design, not by rounding.
COMMON = ["train.epochs=2", "train.batch_size=8", "model.dropout=0.0", "model.cell_context=0", "train.matching=0"]
# An epoch's mean train loss on 1 vs 2 processes. What rounding can move it by: GEMM sums of 4- or 8-row batches
# differ by a few units in the last place (2^-24 ~ 6e-8 relative each), and two epochs of Adam steps grow that:
# measured 1e-7 to 1.4e-5 relative, on AMD EPYC (AVX2) and on Intel Xeon (AVX512-BF16), whose oneDNN kernels
# round differently. What a bug moves it by (a batch averaged twice, a process's examples dropped or sampled
# twice): 1e-2 to 1e-1. The bound sits two decades from each.
LOSS_RTOL = 1e-3
# The final model's answer probabilities on test, 1 vs 2 processes: measured 6e-4 apart at most with the question
# glimpse, 1.8e-3 with the word evidence on (a logsumexp over every cell of per-word keys: more sums whose rounding
# two epochs of Adam grow), on AMD EPYC with AVX512-BF16. A bug (a batch averaged twice, examples dropped) moves
# them by 1e-1.
PROB_ATOL = 5e-3


@pytest.fixture(scope="module")
def two_process_run(trained_run, tmp_path_factory) -> tuple[Path, list[str]]:
    """A 2-process launch (torchrun, gloo) of features and training: the reference both tests below compare with."""
    root = tmp_path_factory.mktemp("two") / "run"
    args = [*private_copy(trained_run, root), *COMMON, "features.overwrite=true"]
    shutil.rmtree(root / "checkpoints")
    stage("features", *args, two=True)
    p = stage("train", *args, two=True)
    assert "(2 process(es))" in p.stdout
    return root, args


def train_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_training_on_two_processes_matches_one(trained_run, two_process_run, tmp_path: Path) -> None:
    """Same global batch (train.batch_size=8 = 2 x 4): the same optimizer steps on the same examples.

    Tolerance: per-epoch train loss within ``LOSS_RTOL`` (relative), identical val accuracy, and the final model's
    answer probabilities on test within ``PROB_ATOL``. Gradients are averaged over 2 processes instead of taken over one
    batch, so only float rounding differs: the per-image GEMMs of a 4-question batch round otherwise than of an
    8-question one (measured: probabilities 6e-4 apart at most with the question glimpse; a mistake in what is
    averaged or sampled moves them by 1e-1). The cell-context conv is off here: oneDNN picks its kernel by the
    batch's shape, and two epochs of Adam grow that rounding into a flipped choice among this near-chance model's
    candidates. (Raw
    weights are not compared: the scorer's output bias and the attention logits' bias get zero gradient by
    construction, softmax being shift-invariant, and Adam turns that float noise into lr-sized steps that change no
    output.) Dropout is off here: with dropout on, each process draws its own masks, which is statistically but not
    numerically the same run.
    """
    two, two_args = two_process_run
    one_args = [*private_copy(trained_run, tmp_path / "one"), *COMMON]
    shutil.rmtree(tmp_path / "one" / "checkpoints")
    shutil.rmtree(tmp_path / "one" / "features")
    shutil.copytree(two / "features", tmp_path / "one" / "features")  # both train on the very same store
    stage("train", *one_args)
    logs = [train_log(tmp_path / "one"), train_log(two)]
    assert [r["val_accuracy"] for r in logs[0]] == [r["val_accuracy"] for r in logs[1]]
    for r1, r2 in zip(*logs, strict=True):
        torch.testing.assert_close(r1["train_loss"], r2["train_loss"], rtol=LOSS_RTOL, atol=0)
    scores = {}
    for run, args in ((tmp_path / "one", one_args), (two, two_args)):
        evaluate(load_config(None, [*args, "eval.split=test", "eval.checkpoint=last"]), Accelerator(cpu=True))
        rows = (run / "eval" / "test" / "per_question.jsonl").read_text().splitlines()
        scores[run] = torch.tensor([[c["score"] for c in json.loads(r)["candidates"]] for r in rows]).softmax(1)
    # each answer's probability: PROB_ATOL (the docstring says what rounding and what a bug move it by)
    torch.testing.assert_close(scores[tmp_path / "one"], scores[two], rtol=0, atol=PROB_ATOL)


def two_machines(name: str, *args: str) -> list[subprocess.CompletedProcess]:
    """``accelerate launch`` as machine 0 and machine 1 on 127.0.0.1, one gloo process each: the multi-node recipe
    of the README, with both "machines" on this host (same repo, same files: the shared-storage case)."""
    import socket

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
         "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
         "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no", f"pipelines/{name}.py", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]  # fmt: skip
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_machines_equal_two_processes(trained_run, two_process_run, tmp_path: Path) -> None:
    """Two "machines" (machine_rank 0 and 1 on localhost, one process each) extract the same store and train the
    same model as one 2-process launch: the rank layout is what matters, not where the ranks run."""
    two, _ = two_process_run
    args = [*private_copy(trained_run, tmp_path / "machines"), *COMMON, "features.overwrite=true"]
    shutil.rmtree(tmp_path / "machines" / "checkpoints")
    two_machines("features", *args)
    train = two_machines("train", *args)
    assert all("(2 process(es))" in t.stdout for t in train), "one world of 2 processes, logged on each machine"
    shards = [sorted((run / "features").glob("shard_*.npy")) for run in (tmp_path / "machines", two)]
    assert [p.name for p in shards[0]] == [p.name for p in shards[1]] and shards[0]
    for a, b in zip(*shards, strict=True):
        assert np.array_equal(np.load(a), np.load(b)), f"{a.name}: the same features"
    logs = [train_log(tmp_path / "machines"), train_log(two)]
    assert [r["val_accuracy"] for r in logs[0]] == [r["val_accuracy"] for r in logs[1]]
    for r1, r2 in zip(*logs, strict=True):
        torch.testing.assert_close(r1["train_loss"], r2["train_loss"], rtol=1e-6, atol=0)


def test_the_decoder_trains_and_answers_alike_on_one_and_two_processes(trained_decoder, tmp_path: Path) -> None:
    """The decoder head under the same 1-vs-2 rule as the scorer: the same losses and val accuracy per epoch, the
    same multiple-choice probabilities (1e-3), and the same open-ended answers from ``eval.mode=open``."""
    runs = {}
    for n in (1, 2):
        args = [*(o for o in trained_decoder if not o.startswith(("run.dir=", "train.epochs="))), *COMMON,
                f"run.dir={tmp_path / str(n)}"]  # fmt: skip
        stage("train", *args, two=n == 2)
        stage("evaluate", *args, "eval.split=test", "eval.checkpoint=last", "eval.batch_size=5", two=n == 2)
        stage("evaluate", *args, "eval.split=test", "eval.checkpoint=last", "eval.batch_size=5", "eval.mode=open",
              "eval.topk=3", two=n == 2)  # fmt: skip
        runs[n] = tmp_path / str(n)
    logs = [train_log(runs[1]), train_log(runs[2])]
    assert [r["val_accuracy"] for r in logs[0]] == [r["val_accuracy"] for r in logs[1]]
    for r1, r2 in zip(*logs, strict=True):
        torch.testing.assert_close(r1["train_loss"], r2["train_loss"], rtol=LOSS_RTOL, atol=0)
    probs = [torch.tensor([[c["score"] for c in json.loads(r)["candidates"]]
                           for r in (run / "eval" / "test" / "per_question.jsonl").read_text().splitlines()]).softmax(1)
             for run in (runs[1], runs[2])]  # fmt: skip
    torch.testing.assert_close(probs[0], probs[1], rtol=0, atol=1e-3)
    metrics = [json.loads((run / "eval" / "test_open" / "metrics.json").read_text()) for run in (runs[1], runs[2])]
    assert (metrics[0]["processes"], metrics[1]["processes"]) == (1, 2)
    answers = [[json.loads(r)["answers"] for r in (run / "eval" / "test_open" / "per_question.jsonl").read_text()
                .splitlines()] for run in (runs[1], runs[2])]  # fmt: skip
    assert len(answers[0]) == len(answers[1]) == metrics[0]["n"]
    for one, two in zip(*answers, strict=True):  # the same beams, but where two of them tie within rounding
        for a, b in zip(one, two, strict=True):
            assert a["answer"] == b["answer"] or abs(a["score"] - b["score"]) < 1e-3, (one, two)


MASKS = """
import sys
import torch
from accelerate import Accelerator
from vqa.training.optim import seed_epoch

acc = Accelerator(cpu=True)
seed_epoch(0, 3)  # what every training epoch does first
mask = torch.nn.functional.dropout(torch.ones(64), p=0.5)
torch.save(mask, f"{sys.argv[1]}/mask_{acc.process_index}_of_{acc.num_processes}.pt")
"""


def test_each_process_draws_its_own_dropout_masks(tmp_path: Path) -> None:
    """Seeded from (seed, epoch, process): two processes never share masks (they would train on the same noise),
    and one process draws exactly what rank 0 of two does, so a single-process run is unchanged and resumes
    as before."""
    script = tmp_path / "masks.py"
    script.write_text(MASKS)
    for two in (False, True):
        cmd = [sys.executable, *(TORCHRUN if two else ()), str(script), str(tmp_path)]
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
    rank0, rank1, alone = (torch.load(tmp_path / f"mask_{n}.pt", weights_only=True)
                           for n in ("0_of_2", "1_of_2", "0_of_1"))  # fmt: skip
    assert not torch.equal(rank0, rank1), "two processes, two masks"
    assert torch.equal(rank0, alone), "rank 0 draws what one process draws"
