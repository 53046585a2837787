"""Frozen layers below the adapters run once: training on their cached states is the whole model's training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from intentlab.config import Config
from intentlab.data.batching import Collator
from intentlab.training import frozen
from intentlab.training.setup import Setup, make_accelerator


def test_a_run_records_the_layers_it_computed_once(tiny_model: str, toy_data: str, tmp_path: Path) -> None:
    from intentlab.config import resolve
    from intentlab.runs import load_result
    from intentlab.training.loop import train

    flags = {"model": tiny_model, "data": toy_data, "epochs": 1, "batch_size": 8, "bf16": False, "threads": 1}
    train(resolve("lora", None, {**flags, "adapter_layers": 1}), tmp_path / "once", progress=False)
    assert load_result(tmp_path / "once").train.frozen_layers_cached == 1
    train(resolve("lora", None, flags), tmp_path / "every", progress=False)  # adapters in both layers
    assert load_result(tmp_path / "every").train.frozen_layers_cached == 0


def setup_for(tiny_model: str, toy_data: str, method: str, **kw: object) -> Setup:
    targets = ["key", "value", "output.dense"] if method == "ia3" else ["all-linear"]
    options: dict[str, object] = dict(
        method=method,
        model=tiny_model,
        data=toy_data,
        bf16=False,
        encoder_dropout=0.0,
        dropout=0.0,  # no random head or adapter dropout, so that two forward passes can be compared
        lora_dropout=0.0,
        adapter_layers=1,
        target_modules=targets,
        threads=1,
    )
    cfg = Config(**{**options, **kw})
    torch.manual_seed(0)
    return Setup(cfg, make_accelerator(cfg))


def step(setup: Setup, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    setup.model.zero_grad(set_to_none=True)
    out = setup.model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in setup.model.named_parameters() if p.requires_grad}
    return out.logits.detach(), grads


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_cached_frozen_layers_give_the_whole_models_logits_and_gradients(
    tiny_model: str, toy_data: str, method: str
) -> None:
    setup = setup_for(tiny_model, toy_data, method)
    assert setup.from_layer == 1  # the 2-layer model's bottom layer ran once, before training
    assert isinstance(setup.collate, frozen.StateCollator)
    setup.model.train()
    whole = Collator(setup.tokens["train"], setup.y["train"], setup.pad_id)
    indices = max(setup.sampler.batches(), key=lambda b: max(len(setup.tokens["train"][i]) for i in b))
    cached = setup.collate(indices)
    assert cached["hidden_states"].shape[:2] == cached["attention_mask"].shape
    logits, grads = step(setup, cached)
    want_logits, want_grads = step(setup, whole(indices))
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-4)
    assert grads.keys() == want_grads.keys() and any(".layer.1." in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_frozen_layers_are_cached_only_where_that_is_exact_and_fits(
    tiny_model: str, toy_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = setup_for(tiny_model, toy_data, "lora")
    cfg, model = setup.cfg, setup.full_model
    lengths = [len(t) for t in setup.tokens["train"]]
    assert frozen.cached_layers(cfg, model, lengths, 1) == 1
    assert frozen.cached_layers(cfg.replace(cache_frozen_layers=False), model, lengths, 1) == 0
    assert frozen.cached_layers(cfg.replace(adapter_layers=None), model, lengths, 1) == 0
    assert frozen.cached_layers(cfg.replace(adapter_layers=2), model, lengths, 1) == 0  # every layer adapted
    assert frozen.cached_layers(cfg, model, lengths, 2) == 0  # data-parallel processes split batches
    assert frozen.cached_layers(cfg.replace(compile=True), model, lengths, 1) == 0
    monkeypatch.setattr(
        frozen, "MAX_CACHE_BYTES", sum(lengths) * 32 * 4 - 1
    )  # hidden 32, fp32: one byte short
    assert frozen.cached_layers(cfg, model, lengths, 1) == 0
    # the tiny BERT's own dropout (0.1) makes the bottom layers random: they must run at every step
    random = setup_for(tiny_model, toy_data, "lora", encoder_dropout=None)
    assert random.from_layer == 0 and isinstance(random.collate, Collator)
