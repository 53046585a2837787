"""Resumable training state: Accelerate's `save_state` plus the loop's own counters, written atomically.

`<run>/checkpoint/` holds model/optimizer/scheduler/RNG states (Accelerate), `loop.json` (epoch, step
within the epoch, per-epoch rows so far, early-stopping state, partial-epoch sums) and, when early
stopping kept an earlier epoch, `best.safetensors`. A new checkpoint is built in a temp folder and
swapped in by rename, so a kill at any moment leaves either the old or the new checkpoint whole.

SIGINT/SIGTERM set a flag; the loop checks it after each step, writes a checkpoint and stops with
`Interrupted`, whose message says how to resume.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intentlab.errors import UserError
from intentlab.runs.files import CHECKPOINT

if TYPE_CHECKING:
    import torch


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps; restores the old handlers on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: signals cannot be caught there
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def save(
    accelerator: Any, run: Path, loop: dict[str, Any], best_state: dict[str, torch.Tensor] | None
) -> None:
    """Write the checkpoint of the current step (main process writes loop.json; all call save_state)."""
    from safetensors.torch import save_file

    final = run / CHECKPOINT
    tmp = run / f".{CHECKPOINT}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "loop.json").write_text(json.dumps(loop))
        if best_state is not None:
            save_file({k: v.contiguous() for k, v in best_state.items()}, tmp / "best.safetensors")
        old = run / f".{CHECKPOINT}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load(accelerator: Any, run: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None] | None:
    """Restore states from `run/checkpoint` (if any); returns (loop counters, best weights) or None."""
    from safetensors.torch import load_file

    folder = run / CHECKPOINT
    if not (folder / "loop.json").is_file():
        old = run / f".{CHECKPOINT}.old"  # killed between the two renames of save()
        if (old / "loop.json").is_file():
            folder = old
        else:
            return None
    try:  # Accelerate loads its pickled states with torch.load(weights_only=True): no code runs from them
        accelerator.load_state(str(folder))
        loop = json.loads((folder / "loop.json").read_text())
        best = load_file(folder / "best.safetensors") if (folder / "best.safetensors").is_file() else None
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, KeyError, TypeError) as e:
        raise UserError(
            f"the checkpoint in {folder} cannot be loaded safely ({type(e).__name__}: {str(e).splitlines()[0][:120]}). "
            "Train the run again with --overwrite."
        ) from None
    if not isinstance(loop, dict):
        raise UserError(f"{folder}/loop.json is corrupt. Train the run again with --overwrite.")
    return loop, best


def remove(run: Path) -> None:
    for name in (CHECKPOINT, f".{CHECKPOINT}.tmp", f".{CHECKPOINT}.old"):
        shutil.rmtree(run / name, ignore_errors=True)
