"""Knowledge distillation: a trained run (the teacher) teaches a new run (the student).

    intentlab train --method lora --teacher runs/mpnet-lora --out runs/student

Any finished encoder run can teach, whatever its encoder and tokenizer: its logits for every training
text are computed once, through the one run opener, and kept in the student's run folder
(`teacher/logits.safetensors` with `teacher/teacher.json`: the teacher's checksum over its model/ files,
the training texts' checksum and the label order). A resumed run, or a run trained again into the same
folder, reads them back instead of running the teacher again; resuming after the teacher changed is
refused.

The loss (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network"):

    (1 - alpha) * CE(student, gold) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The T^2 keeps the soft term's gradients on the scale of the hard term's as T changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from intentlab import methods
from intentlab.errors import UserError
from intentlab.runs.files import MODEL, TEACHER
from intentlab.runs.record import TeacherInfo

LOGITS = "logits.safetensors"
INFO = "teacher.json"
FORMAT = 1


@dataclass
class Teacher:
    """The teacher's logits for the student's training texts (rows in training order, columns in the
    student's label order) and the record of where they came from."""

    logits: np.ndarray
    info: TeacherInfo
    texts_sha256: str
    labels: list[str]


def model_checksum(run: Path) -> str:
    """SHA-256 over the names and contents of a run's model/ files (regular files only)."""
    from intentlab.runs.safe_files import sha256_regular

    folder = run / MODEL
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if not p.is_dir()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + sha256_regular(path).encode() + b"\n")
    return h.hexdigest()


def texts_checksum(texts: list[str]) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def prepare(
    cfg: Any, texts: list[str], labels: list[str], out: Path | None, resume: bool = False
) -> Teacher | None:
    """The teacher's logits for `texts` (None without `cfg.teacher`): read back from `out/teacher/`
    when they were computed from this teacher for these texts, else computed now. Bad teachers fail
    here, before the run folder is touched."""
    if not cfg.teacher:
        return None
    from intentlab.runs.record import load_result

    run = Path(cfg.teacher).expanduser()
    if not run.is_dir():
        raise UserError(f"--teacher {run}: no such run folder. Pass the --out folder of a finished run.")
    record = load_result(run)
    if not methods.get(record.run.method).encoder or not (run / MODEL).is_dir():
        raise UserError(
            f"--teacher {run} is a {record.run.method} run: a teacher must be an encoder run "
            "(its logits are probabilities; TF-IDF's SVM margins are not). Train one with --method lora or full."
        )
    sha = model_checksum(run)
    wanted = texts_checksum(texts)
    kept = _read(out / TEACHER) if out is not None else None
    if kept is not None and (kept.info.sha256, kept.texts_sha256, kept.labels) == (sha, wanted, labels):
        return Teacher(kept.logits, _info(run, sha, record, cfg, len(texts), reused=True), wanted, labels)
    if kept is not None and resume:
        raise UserError(
            f"--teacher {run} changed since this run started (its model files or the training texts differ). "
            "Train the student again with --overwrite, or point --teacher at the run it started from."
        )
    logits = _teacher_logits(run, texts, labels, cfg.eval_batch_size)
    return Teacher(logits, _info(run, sha, record, cfg, len(texts)), wanted, labels)


def _info(run: Path, sha: str, record: Any, cfg: Any, n: int, reused: bool = False) -> TeacherInfo:
    return TeacherInfo(
        path=str(run.resolve()),
        sha256=sha,
        method=record.run.method,
        model=record.run.model,
        test_accuracy=float(record.test.accuracy),
        alpha=float(cfg.distill_alpha),
        temperature=float(cfg.distill_temperature),
        texts=n,
        reused=reused,
    )


def _teacher_logits(run: Path, texts: list[str], labels: list[str], batch_size: int) -> np.ndarray:
    """The teacher's logits for `texts`, its columns put in the student's label order."""
    from intentlab.inference.opener import open_run

    teacher = open_run(run, ood=False, batch_size=batch_size)
    missing = [name for name in labels if name not in teacher.labels]
    if missing:
        raise UserError(
            f"--teacher {run} does not know {len(missing)} of this run's intents ({', '.join(missing[:3])}...). "
            "Distil from a teacher trained on the same intents."
        )
    logits = teacher.outputs(texts, progress="teacher logits").logits
    return np.ascontiguousarray(logits[:, [teacher.labels.index(name) for name in labels]], dtype=np.float32)


def _read(folder: Path) -> Teacher | None:
    """Logits kept by an earlier start of this run, or None when there are none (or they are damaged:
    then they are computed again)."""
    from safetensors.numpy import load_file

    from intentlab.runs.safe_files import check_safetensors, read_json

    try:
        meta = read_json(folder / INFO)
        check_safetensors(folder / LOGITS)
        logits = load_file(str(folder / LOGITS))["logits"]
        info = TeacherInfo(**meta["info"])
        kept = Teacher(logits, info, str(meta["texts_sha256"]), [str(x) for x in meta["labels"]])
    except (UserError, OSError, KeyError, TypeError, ValueError):
        return None
    if meta.get("format") != FORMAT or logits.shape != (info.texts, len(kept.labels)):
        return None
    return kept


def save(teacher: Teacher, folder: Path) -> None:
    """Write `folder` as a whole: a temporary folder renamed into place."""
    from dataclasses import asdict

    from safetensors.numpy import save_file

    from intentlab.folders import write_json_atomic

    tmp = folder.parent / f".{folder.name}.tmp-{time.time_ns()}"
    try:
        tmp.mkdir()
        save_file({"logits": teacher.logits}, str(tmp / LOGITS))
        meta = {
            "format": FORMAT,
            "info": asdict(teacher.info),
            "texts_sha256": teacher.texts_sha256,
            "labels": teacher.labels,
        }
        write_json_atomic(tmp / INFO, meta)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def soft_term(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float, temperature: float
) -> torch.Tensor:
    """What distillation adds to the summed cross-entropy of a batch: alpha * (T^2 * KL - CE), summed
    over its rows. Added to the model's loss (summed CE, plus any regulariser) it gives
    (1 - alpha) * CE + alpha * T^2 * KL."""
    s = student.float()
    log_p_student = F.log_softmax(s / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="sum", log_target=True)
    ce = F.cross_entropy(s, labels, reduction="sum")
    return alpha * (temperature**2 * kl - ce)


class DistillCollator:
    """Wraps a training collator: each batch also carries its rows' teacher logits (this process's
    share, as the wrapped collator takes it)."""

    def __init__(self, inner: Any, logits: np.ndarray, rank: int = 0, world: int = 1) -> None:
        self.inner = inner
        self.logits = torch.from_numpy(logits)
        self.rank = rank
        self.world = world

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        batch = self.inner(indices)
        batch["teacher_logits"] = self.logits[indices[self.rank :: self.world]]
        return batch
