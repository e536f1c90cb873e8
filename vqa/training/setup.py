"""What a training run is made of before its first step: the checked data, the model, the loaders, the optimiser,
prepared by Accelerate (``setup``), so that the loop (``loop.py``) only runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from ..checkpoint import complete_checkpoints, read_meta, remove_stale
from ..common.errors import VQAError
from ..config import Config
from ..data.loader import QAExamples, collate, make_sampler, split_rows
from ..data.vectors import load_word_vectors
from ..data.words import prepare_qa
from ..features.store import FeatureReader, check_covers, check_store
from ..model import VQAModel
from ..provenance import check_data, data_fingerprint
from ..run import Run
from .optim import make_optimizer
from .schedule import WarmupStableDecay


def build_model(run: Run, tokenizer: Any, grid: tuple[int, int, int], log: Any) -> VQAModel:
    """``model.*`` as the run's task builds it, with pretrained word vectors when ``model.word_vectors`` names some."""
    model = run.task.build_model(run.task.model_spec(run.cfg, len(tokenizer), grid))
    load_word_vectors(model, run.cfg, tokenizer, log)
    return model


@dataclass
class Training:
    """The prepared objects one run trains with: everything ``train_one_epoch`` and ``validate`` touch."""

    run: Run
    accelerator: Accelerator
    model: Any  # VQAModel, as wrapped by accelerator.prepare
    optimizer: Any
    scheduler: Any  # LambdaLR over ``schedule``
    schedule: WarmupStableDecay
    train_loader: Any
    val_loader: Any
    train_examples: QAExamples
    steps_per_epoch: int  # optimizer steps per epoch
    val_family: dict[int, str]  # qa_id -> question family, for the log (empty for a table cached before it)
    data: dict[str, Any]  # what the run trains on (``provenance.data_fingerprint``), kept in every checkpoint

    @property
    def cfg(self) -> Config:
        return self.run.cfg

    @property
    def net(self) -> Any:
        """The model unwrapped from DDP: its head's own methods (``answer_loss``)."""
        return self.accelerator.unwrap_model(self.model)


def build_training(run: Run, accelerator: Accelerator, model: VQAModel, train_rows: Any, val_rows: Any,
                   reader: FeatureReader | None, data: dict[str, Any]) -> Training:  # fmt: skip
    """Loaders, AdamW and the warmup-stable-decay schedule around ``model``, all prepared by Accelerate.

    ``reader`` None: no image features (the blind variant). drop_last on train: every optimizer step sees a full
    global batch, so 1 and N processes take the same steps (Accelerate would pad an uneven last batch with
    repeated examples on N processes only)."""
    cfg, t = run.cfg, run.cfg.train
    train_examples = QAExamples(train_rows, reader, cfg.seed, train=True)
    train_loader = DataLoader(train_examples, batch_size=t.batch_size, collate_fn=collate, num_workers=t.num_workers,
                              sampler=make_sampler(t.batching, train_rows, cfg.seed), drop_last=True)  # fmt: skip
    val_loader = DataLoader(QAExamples(val_rows, reader, cfg.seed, train=False), batch_size=t.batch_size,
                            collate_fn=collate, num_workers=t.num_workers)  # fmt: skip
    optimizer, schedule, scheduler, steps_per_epoch = make_optimizer(model, t, len(train_loader))
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    families = dict(zip(val_rows["qa_id"], val_rows["family"], strict=True)) if "family" in val_rows.column_names \
        else {}
    return Training(run, accelerator, model, optimizer, scheduler, schedule, train_loader, val_loader,
                    train_examples, steps_per_epoch, families, data)  # fmt: skip


def setup(run: Run, accelerator: Accelerator) -> Training:
    """Check the store, tokenise the QA, split it, build the model and its ``Training``: all before long work."""
    cfg, log = run.cfg, accelerator.print
    t = cfg.train
    if t.batch_size % accelerator.num_processes:
        raise VQAError(f"train.batch_size={t.batch_size} must divide by the {accelerator.num_processes} processes")
    if accelerator.is_main_process:
        remove_stale(run.checkpoints_dir)
    resuming = t.resume == "auto" and bool(complete_checkpoints(run.checkpoints_dir))
    reader = run.reader
    check_store(cfg.features, reader)
    tokenizer, table = prepare_qa(run, accelerator, resuming, reader.grid)
    data = data_fingerprint(run.dataset, run.tokenizer_dir / "tokenizer.json")
    if resuming:  # before anything is loaded: a run never continues on other data than it started on
        last = complete_checkpoints(run.checkpoints_dir)[-1][1]
        check_data(read_meta(last), data, str(last), log)
    check_covers(reader, table["image_id"])
    train_rows, dropped = split_rows(table, "train", reader)
    val_rows, _ = split_rows(table, "val", reader)
    if dropped:
        log(f"{dropped} train questions skipped: their image has no features (see the manifest's 'missing')")
    if len(train_rows) < t.batch_size:
        raise VQAError(f"{len(train_rows)} train questions is less than one batch (train.batch_size={t.batch_size})")
    set_seed(cfg.seed)
    model = build_model(run, tokenizer, reader.grid, log)
    features = reader if model.spec.sees_image else None
    return build_training(run, accelerator, model, train_rows, val_rows, features, data)
