"""With [CLS] pooling a training step runs the last encoder layer for [CLS] alone: the same logits and
gradients as the whole layer, from one row per text instead of one per token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from intentlab.config import Config
from intentlab.data.batching import Collator
from intentlab.models.classifier import classifier_of
from intentlab.models.cls_layer import has_bert_layer
from intentlab.models.speed import cls_row_usable, encoder_layers
from intentlab.training.setup import Setup, make_accelerator


def setup_for(tiny_model: str, toy_data: str, method: str, **kw: object) -> Setup:
    options: dict[str, object] = dict(
        method=method,
        model=tiny_model,
        data=toy_data,
        pooling="cls",
        bf16=False,
        encoder_dropout=0.0,
        dropout=0.0,  # nothing random, so that two forward passes can be compared
        lora_dropout=0.0,
        target_modules=["key", "value", "output.dense"] if method == "ia3" else ["all-linear"],
        threads=1,
    )
    torch.manual_seed(0)
    cfg = Config(**{**options, **kw})
    return Setup(cfg, make_accelerator(cfg))


@contextmanager
def rows_into_last_feed_forward(model: nn.Module) -> Iterator[list[int]]:
    """The number of rows (texts x positions) each forward pass feeds the last layer's feed-forward block."""
    seen: list[int] = []
    last = encoder_layers(classifier_of(model).encoder)[-1]
    hook = last.intermediate.dense.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[:-1].numel()))
    try:
        yield seen
    finally:
        hook.remove()


def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def padded_batch(setup: Setup) -> tuple[list[int], dict]:
    """The training batch whose texts differ most in length (the most padding)."""
    lengths = [len(t) for t in setup.tokens["train"]]
    rows = sorted(range(len(lengths)), key=lengths.__getitem__)
    indices = rows[:3] + rows[-3:]
    assert lengths[indices[0]] < lengths[indices[-1]]
    return indices, Collator(setup.tokens["train"], setup.y["train"], setup.pad_id)(indices)


@pytest.mark.parametrize(
    "method,attention", [("full", "sdpa"), ("full", "eager"), ("lora", "sdpa"), ("ia3", "eager")]
)
def test_the_cls_row_gives_the_whole_layers_logits_and_gradients(
    tiny_model: str, toy_data: str, method: str, attention: str
) -> None:
    setup = setup_for(tiny_model, toy_data, method, attention=attention)
    model = setup.model
    model.train()
    indices, batch = padded_batch(setup)
    with rows_into_last_feed_forward(model) as rows:
        logits, grads = step(model, batch)
    assert rows == [len(indices)]  # one row per text: [CLS]
    classifier_of(model).cls_last_layer = False
    with rows_into_last_feed_forward(model) as rows:
        want_logits, want_grads = step(model, batch)
    assert rows == [batch["input_ids"].numel()]  # every position, padding included
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-4)
    assert grads.keys() == want_grads.keys() and any(".layer.1." in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_cached_frozen_layers_and_the_cls_row_together(tiny_model: str, toy_data: str) -> None:
    setup = setup_for(tiny_model, toy_data, "lora", adapter_layers=1)
    assert setup.from_layer == 1  # LoRA's shipped shape: cached bottom layers, [CLS] pooling
    setup.model.train()
    indices, batch = padded_batch(setup)
    with rows_into_last_feed_forward(setup.model) as rows:
        logits, grads = step(setup.model, setup.collate(indices))
    assert rows == [len(indices)]
    want_logits, want_grads = step(setup.model, batch)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-4)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("change", ["eval", "mean", "off"])
def test_the_whole_last_layer_runs_outside_cls_training_steps(
    tiny_model: str, toy_data: str, change: str
) -> None:
    """Evaluation (what `intentlab evaluate` and the exports run), mean pooling, and the switch turned off."""
    kw = {"pooling": "mean"} if change == "mean" else {"cls_last_layer": False} if change == "off" else {}
    setup = setup_for(tiny_model, toy_data, "full", **kw)
    setup.model.train(change != "eval")
    _, batch = padded_batch(setup)
    with rows_into_last_feed_forward(setup.model) as rows, torch.no_grad():
        setup.model(**batch)
    assert rows == [batch["input_ids"].numel()]


def test_only_layers_with_berts_code_run_the_cls_row(tiny_model: str) -> None:
    from transformers import AutoModel, BertConfig, BertModel

    assert cls_row_usable(AutoModel.from_pretrained(tiny_model))
    small = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99
    )
    decoder = BertModel(BertConfig(is_decoder=True, **small))
    assert not has_bert_layer(decoder.encoder.layer[0])
    renamed = BertModel(BertConfig(**small))
    renamed.encoder.layer[0].attention.self.__class__ = type("RotarySelfAttention", (nn.Module,), {})
    assert not cls_row_usable(renamed)
    flex = AutoModel.from_pretrained(tiny_model)
    flex.config._attn_implementation = "flex_attention"  # its mask is a BlockMask, not a tensor
    assert not cls_row_usable(flex)
