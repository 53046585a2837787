"""The ONNX Runtime backend: an exported `model.onnx` behind the same interface as `TorchBackend`.

    backend = OnnxBackend("export/model.onnx", tokenizer, max_length=128)
    backend.run(["I lost my card"]).logits

Batches go through the same length-sorted path (`engine.run_sorted`), so only the forward differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.data.batching import tokenize
from intentlab.errors import UserError
from intentlab.inference.engine import CPU_BATCH_TOKENS, DEFAULT_BATCH_SIZE, Outputs, pad_id, run_sorted

INSTALL = "pip install 'intentlab[onnx]'"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"ONNX needs onnx and onnxruntime. Run: {INSTALL}") from None
    return onnxruntime


class OnnxBackend:
    """A `model.onnx` (inputs input_ids and attention_mask, output logits) on ONNX Runtime's CPU provider."""

    def __init__(
        self,
        path: str | Path,
        tokenizer: Any,
        max_length: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        spinning: bool = True,
    ) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:  # idle worker threads sleep instead of busy-waiting for the next batch
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run_ids(self, ids: list[list[int]], features: bool = False, progress: str | None = None) -> Outputs:
        want = ["logits"] + (["features"] if features else [])
        missing = sorted(set(want) - set(self.outputs))
        if missing:
            raise UserError(f"this ONNX model has no {missing[0]} output. Export it again with intentlab.")

        def step(batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
            feeds = {k: batch[k].numpy() for k in ("input_ids", "attention_mask")}
            got = self.session.run(want, feeds)
            return got[0], (got[1] if features else None)

        return run_sorted(ids, pad_id(self.tokenizer), self.batch_size, step, CPU_BATCH_TOKENS, progress)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize(self.tokenizer, texts, self.max_length)

    def run(self, texts: Sequence[str], features: bool = False, progress: str | None = None) -> Outputs:
        return self.run_ids(self.encode(texts), features, progress)
