"""Methods: which weights train under each method, and the head travels with the adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from intentlab import methods as M
from intentlab.config import Config
from intentlab.models.adapters import expand_targets
from intentlab.models.build import build_model, count_params


def trainable(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def make(tiny_model: str, method: str, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(Config(method=method, model=tiny_model, **kw), num_labels=5)


def test_lora_trains_only_lora_weights_and_the_head(tiny_model: str) -> None:
    model = make(tiny_model, "lora", target_modules=["query", "value"])
    names = trainable(model)
    assert names, "nothing trains"
    for n in names:
        assert ".lora_A." in n or ".lora_B." in n or "classifier.modules_to_save" in n, n
    assert any("classifier" in n for n in names)
    assert sum("query.lora_A" in n for n in names) == 2  # one per layer of the 2-layer model
    assert not any("key" in n or "intermediate" in n for n in names)


def test_full_trains_every_weight(tiny_model: str) -> None:
    model = make(tiny_model, "full")
    assert all(p.requires_grad for p in model.parameters())
    t, total = count_params(model)
    assert t == total == sum(p.numel() for p in model.parameters())


def test_head_trains_only_the_classifier(tiny_model: str) -> None:
    assert trainable(make(tiny_model, "head")) == ["classifier.weight", "classifier.bias"]
    names = trainable(make(tiny_model, "head", pooling="cls", train_pooler=True))
    assert names == [
        "encoder.pooler.dense.weight",
        "encoder.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ]


def test_dora_and_ia3_use_their_peft_weights(tiny_model: str) -> None:
    assert any("lora_magnitude_vector" in n for n in trainable(make(tiny_model, "dora")))
    ia3 = trainable(make(tiny_model, "ia3", target_modules=["key", "value", "output.dense"]))
    assert any("ia3_l" in n for n in ia3) and all("ia3_l" in n or "classifier" in n for n in ia3)


def test_all_linear_covers_encoder_layers_but_not_pooler_or_head(tiny_model: str) -> None:
    model = make(tiny_model, "full", pooling="cls")
    targets = expand_targets(model, ["all-linear"])
    assert targets == [
        "attention.output.dense",
        "attention.self.key",
        "attention.self.query",
        "attention.self.value",
        "intermediate.dense",
        "output.dense",
    ]
    lora = make(tiny_model, "lora", pooling="cls", target_modules=["all-linear"])
    adapted = {n.split(".lora_A")[0] for n in trainable(lora) if ".lora_A." in n}
    assert len(adapted) == 2 * 6 and not any("pooler" in n or "classifier" in n for n in adapted)
    assert any("pooler.modules_to_save" in n for n in trainable(lora))  # cls pooling: pooler trains with head


@pytest.mark.parametrize("method", M.where(adapter=True, quantized=False))
def test_adapter_layers_adapts_the_top_layers_and_runs_no_backward_below(
    tiny_model: str, method: str
) -> None:
    targets = ["key", "value", "output.dense"] if method == "ia3" else ["all-linear"]
    model = make(tiny_model, method, target_modules=targets, adapter_layers=1)
    adapter = [n for n in trainable(model) if "classifier" not in n]
    assert adapter and all(".layer.1." in n for n in adapter), adapter  # the 2-layer model's top layer only
    every = [n for n in trainable(make(tiny_model, method, target_modules=targets)) if "classifier" not in n]
    assert len(every) == 2 * len(adapter)
    outputs: dict[int, torch.Tensor] = {}
    layers = model.get_base_model().encoder.encoder.layer
    for i, layer in enumerate(layers):
        layer.register_forward_hook(
            lambda m, a, out, i=i: outputs.__setitem__(i, out[0] if isinstance(out, tuple) else out)
        )
    model.train()
    ids = torch.tensor([[101, 2054, 2003, 102]])
    model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum().backward()
    assert not outputs[0].requires_grad  # nothing below the adapted layer joins the autograd graph
    assert outputs[1].requires_grad


def test_adapter_layers_is_checked_against_the_method_and_fits_any_depth(tiny_model: str) -> None:
    from intentlab.config import validate
    from intentlab.errors import UserError

    with pytest.raises(UserError, match="adapter_layers must be at least 1"):
        validate(Config(method="lora", adapter_layers=0))
    with pytest.raises(UserError, match=r"adapter_layers applies to adapter methods .*not full"):
        validate(Config(method="full", adapter_layers=2))
    adapted = trainable(make(tiny_model, "lora", target_modules=["query"], adapter_layers=3))
    assert sum(".lora_A." in n for n in adapted) == 2  # a count beyond the 2-layer model's depth: every layer


@pytest.mark.parametrize("method", ["lora", "full"])
def test_mean_pooling_ignores_padding(tiny_model: str, method: str) -> None:
    model = make(tiny_model, method).eval()
    ids = torch.tensor([[101, 2054, 2003, 102]])
    padded = torch.tensor([[101, 2054, 2003, 102, 0, 0, 0]])
    a = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    b = model(input_ids=padded, attention_mask=(padded != 0).long())
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_only_fixed_features_are_cached() -> None:
    from intentlab.models.build import features_are_fixed

    assert features_are_fixed(Config(method="head", encoder_dropout=0.0))
    assert not features_are_fixed(Config(method="head", encoder_dropout=0.1))  # dropout inside the encoder
    assert not features_are_fixed(
        Config(method="head", encoder_dropout=0.0, pooling="cls", train_pooler=True)
    )
    assert features_are_fixed(Config(method="head", encoder_dropout=0.0, pooling="cls", train_pooler=False))
    assert not features_are_fixed(Config(method="lora", encoder_dropout=0.0))


def test_a_head_run_trains_on_features_computed_once(
    tmp_path: object, tiny_model: str, toy_data: str
) -> None:
    import json
    import time
    from pathlib import Path

    import numpy as np

    from conftest import tiny_args
    from intentlab.cli import main
    from intentlab.data import dataset_for
    from intentlab.inference.opener import open_run
    from intentlab.runs import read_config

    calls = {"n": 0, "seconds": 0.0}
    from intentlab.models import classifier

    real = classifier.IntentClassifier.features

    def counting(self: object, *a: object, **k: object) -> torch.Tensor:
        calls["n"] += 1
        t0 = time.perf_counter()
        try:
            time.sleep(0.3)  # a slow encoder: its pass must show in the recorded training time
            return real(self, *a, **k)
        finally:
            calls["seconds"] += time.perf_counter() - t0

    classifier.IntentClassifier.features = counting  # type: ignore[method-assign]
    try:
        out = Path(str(tmp_path)) / "head"
        assert (
            main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, toy_data, 4)]) == 0
        )
    finally:
        classifier.IntentClassifier.features = real  # type: ignore[method-assign]
    # one encoder pass per inference batch of each split, not one per training step of every epoch
    assert calls["n"] <= 6, calls
    # the encoder pass is the bulk of such a run's work, so it counts as training time, with the epochs
    epochs = [json.loads(line)["epoch_seconds"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_seconds = json.loads((out / "result.json").read_text())["train"]["train_seconds"]
    assert train_seconds >= calls["seconds"] + sum(epochs)
    recorded = json.loads((out / "test_predictions.json").read_text())["y_pred"]
    ds = dataset_for(read_config(out))
    reloaded = open_run(out).logits(ds.test.texts).argmax(1)
    assert np.array_equal(reloaded, recorded)  # the saved full model is the one that was trained


def test_frozen_linears_in_bf16_change_nothing_under_autocast(tiny_model: str) -> None:
    import copy

    from intentlab.models.speed import frozen_linears_to_bf16

    model = make(tiny_model, "lora", target_modules=["all-linear"]).eval()
    cast = copy.deepcopy(model)
    # the 12 adapted base layers and peft's frozen copy of the head; the trained head stays fp32
    assert frozen_linears_to_bf16(cast) == 13
    assert cast.base_model.model.classifier.modules_to_save["default"].weight.dtype == torch.float32
    ids = torch.tensor([[101, 2054, 2003, 1037, 2742, 102]])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        b = cast(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", M.where(adapter=True, quantized=False))
def test_adapter_input_casts_off_change_nothing_under_autocast(tiny_model: str, method: str) -> None:
    """Training turns off peft's cast of each LoRA input to fp32 (autocast casts it straight back): logits
    and every gradient stay bit-identical while the copies go; DoRA and IA3 layers are left as they are."""
    import copy

    from intentlab.models.speed import frozen_linears_to_bf16, no_adapter_input_casts

    model = make(tiny_model, method, target_modules=["all-linear"])
    frozen_linears_to_bf16(model)  # as training under bf16 sets the model up
    off = copy.deepcopy(model)
    plain_lora = method in ("lora", "adalora")
    assert no_adapter_input_casts(off) == (12 if plain_lora else 0)  # the 2-layer BERT's linear layers
    batch = {
        "input_ids": torch.tensor([[101, 2054, 2003, 1037, 2742, 102], [101, 2054, 102, 0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]),
    }

    def step(m: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        m.eval()  # no dropout, so both see the same computation; gradients still flow
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.profiler.profile() as prof:
            logits = m(**batch).logits
            loss = logits.float().logsumexp(1).mean()
        loss.backward()
        casts = sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")
        return logits, {n: p.grad for n, p in m.named_parameters() if p.requires_grad}, casts

    a, grads_a, casts_a = step(model)
    b, grads_b, casts_b = step(off)
    assert torch.equal(a, b)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name
    # in the forward (profiled), the 4 adapted layers fed a bf16 tensor (attention output, FFN
    # output) lose their two casts: up to fp32 by peft, back to bf16 by autocast
    assert casts_a - casts_b == (8 if plain_lora else 0)


@pytest.mark.parametrize("method", M.where(regime=M.LOOP, quantized=False))
def test_bf16_inference_weights_keep_the_logits_of_training_storage(tiny_model: str, method: str) -> None:
    """bf16 inference stores linear weights in bf16 once instead of autocast casting them every forward:
    the logits are those of fp32 weights under autocast and of the layout training used (frozen base
    layers in bf16); adapter weights stay fp32. DoRA reads its base weight in its own norm arithmetic,
    so for DoRA the match is with training's layout only."""
    import copy

    from intentlab.inference.engine import Placement, forward_batches
    from intentlab.models.speed import bf16_inference_weights, frozen_linears_to_bf16

    kw = {"target_modules": ["all-linear"]} if method not in ("full", "head") else {}
    model = make(tiny_model, method, **kw)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # adapters away from their identity initialisation, so they matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    as_trained = copy.deepcopy(model)
    frozen_linears_to_bf16(as_trained)  # what training under bf16 does (adapters still trainable)
    fp32_weights = copy.deepcopy(model)
    cast = bf16_inference_weights(model)
    assert cast > 0
    adapter_params = [p for n, p in model.named_parameters() if "lora_" in n or "ia3_" in n]
    assert all(p.dtype == torch.float32 for p in adapter_params)
    assert (len(adapter_params) > 0) == (method not in ("full", "head"))
    ids = [[101, 2054, 2003, 1037, 2742, 102], [101, 2054, 102], [101, 7592, 2088, 2003, 102]]
    bf16 = Placement(torch.device("cpu"), True)

    def logits(m: torch.nn.Module) -> np.ndarray:
        return forward_batches(m, ids, 0, bf16).logits

    assert np.array_equal(logits(model), logits(as_trained))
    if method != "dora":
        assert np.array_equal(logits(model), logits(fp32_weights))


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_attention_kernel_reaches_the_encoder_and_gives_the_same_outputs(
    tiny_model: str, kernel: str
) -> None:
    model, default = make(tiny_model, "full", attention=kernel), make(tiny_model, "full")
    assert {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")} == {kernel}
    batch = {
        "input_ids": torch.tensor([[101, 2054, 2003, 102, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0]]),
    }
    model.eval(), default.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), default(**batch), rtol=1e-4, atol=1e-5)
