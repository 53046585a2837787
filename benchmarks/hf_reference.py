"""The reference setup: Hugging Face Trainer (+ PEFT for LoRA) as a user would write it.

`TrainingArguments` defaults on CPU (fp32, default optimizer, default dropout), `DataCollatorWithPadding`
(pad to the longest text of a random batch), `AutoModelForSequenceClassification` on the same packaged
MiniLM, the same learning rate, batch size, epochs and LoRA rank/targets/adapted layers as intentlab's shipped
config.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

LORA_TARGETS = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]


def labels_of(path: Path) -> list[str]:
    return sorted({r["category"] for r in csv.DictReader(path.open(encoding="utf-8"))})


def load_split(path: Path, tokenizer: Any, label2id: dict[str, int]) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=128)
    return [
        {"input_ids": ids, "attention_mask": m, "labels": label2id[r["category"]]}
        for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], rows, strict=True)
    ]


def build(method: str, num_labels: int, cfg: Any) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from intentlab.models.loading import resolve_model_path

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(cfg.model), num_labels=num_labels
    )
    if method == "lora":
        depth = model.config.num_hidden_layers
        top = cfg.adapter_layers or depth  # the same adapted layers as intentlab's config
        model = get_peft_model(
            model,
            LoraConfig(
                task_type="SEQ_CLS",
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                target_modules=LORA_TARGETS,
                layers_to_transform=list(range(depth - top, depth)),
            ),
        )
    return model


def trainer(
    method: str,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]] | None,
    num_labels: int,
    cfg: Any,
    out: Path,
    epochs: int,
    callbacks: list[Any] | None = None,
) -> Any:
    import numpy as np
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    from intentlab.models.loading import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model))
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=epochs,
        learning_rate=cfg.lr,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        eval_strategy="epoch" if eval_rows else "no",
        per_device_eval_batch_size=256,
        seed=cfg.seed,
    )

    def accuracy(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, axis=1) == p.label_ids).mean())}

    return Trainer(
        model=build(method, num_labels, cfg),
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=accuracy if eval_rows else None,
        callbacks=callbacks,
    )


def timed_train(t: Any) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    out = t.train()
    return time.perf_counter() - t0, out.metrics
