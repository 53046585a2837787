"""A compare matrix's cells: one (method or variant, seed[, train size]) each, trained in a process of its
own (`intentlab train`), so that its memory peak and wall time are its own and a crash in one cell
cannot take the matrix down. The local loop (`training/compare.py`) and the Ray executor
(`training/executors.py`) both run cells through `run_cell`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from intentlab import config as C
from intentlab.errors import Interrupted, UserError
from intentlab.runs.files import CHECKPOINT
from intentlab.runs.record import RunResult, is_complete, load_result


@dataclass
class Cell:
    name: str
    seed: int
    cfg: C.Config

    def path(self, out: Path) -> Path:
        """OUT/<name>/seed-<n>; a train-size cell: OUT/<name>/size-<size>/seed-<n> (whole data keeps the
        plain path, so a learning curve reuses a finished comparison's runs)."""
        size = C.parse_train_size(self.cfg.train_size)
        folder = out / self.name if size is None else out / self.name / f"size-{self.cfg.train_size}"
        return folder / f"seed-{self.seed}"


def tag(cell: Cell) -> str:
    size = f" size {cell.cfg.train_size}" if cell.cfg.train_size else ""
    return f"{cell.name}{size} seed {cell.seed}"


def _die_with_parent() -> None:
    """In a cell's process: get SIGTERM when compare dies, even by SIGKILL (Linux prctl), so no cell
    keeps training unwatched; SIGTERM makes the cell checkpoint and stop."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_cell(cell: Cell, path: Path) -> RunResult:
    """Train one cell in its own process: its memory peak and wall time are its own, and a crash in one
    cell cannot take the matrix down. An interrupted cell with a checkpoint is resumed."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="intentlab-cell-") as tmp:
        if (path / CHECKPOINT).is_dir():
            args = ["train", "--resume", str(path)]
        else:
            cfg_file = Path(tmp) / "config.yaml"
            cfg_file.write_text(cell.cfg.to_yaml(), encoding="utf-8")
            args = ["train", "--config", str(cfg_file), "--out", str(path)]
            args += ["--overwrite"] if path.exists() else []
        code = subprocess.run(
            [sys.executable, "-m", "intentlab", *args], preexec_fn=_die_with_parent
        ).returncode
    if code == 130:
        raise Interrupted(f"compare stopped in cell {tag(cell)}. Run the same command to continue.")
    if code != 0 or not is_complete(path):
        raise UserError(
            f"cell {tag(cell)} failed (exit {code}); its error is printed above. "
            "Fix it and run the same compare command to continue."
        )
    return load_result(path)
