"""Adapter methods through peft: the peft config of a run, built by its method's peft type.

The method table (`intentlab/methods.py`) says which peft type a method is (`LORA`, `IA3`, `ADALORA`)
and what it fixes (DoRA is LoRA with `use_dora`; QLoRA is LoRA on a 4-bit base). Here each peft type
has one builder, and the run's settings (rank, alpha, targets, adapted layers, `peft_options`) become
its config. The classifier head (and pooler, when trained) goes into peft's `modules_to_save`, so it
is saved with the adapter and restored on reload.

Target modules are written as full-path regular expressions of this wrapper's module names
(`encoder.encoder.layer.N....`), so a run's adapter fails loudly on a model of another shape instead
of loading with missing keys; `intentlab export` writes the standard form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.methods import Method, get
from intentlab.runs.model_info import ModelInfo


@dataclass(frozen=True)
class PeftContext:
    """What a peft config builder may use besides the run config."""

    pattern: str  # the adapted linear layers as one full-path regex (what peft is given)
    modules_to_save: list[str]  # the head (and pooler): saved with the adapter
    total_steps: int  # optimizer steps of the whole run (AdaLoRA's budget schedule needs it)
    feedforward_pattern: str | None = None  # IA3: the adapted layers that are feed-forward layers


def _options(cfg: Config, method: Method) -> dict[str, Any]:
    return {**dict(cfg.peft_options or {}), **method.peft_fixed}  # what the method fixes wins


def _lora(cfg: Config, method: Method, ctx: PeftContext) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=ctx.pattern,
        modules_to_save=ctx.modules_to_save,
        **_options(cfg, method),
    )


def _ia3(cfg: Config, method: Method, ctx: PeftContext) -> Any:
    from peft import IA3Config

    return IA3Config(
        target_modules=ctx.pattern,
        feedforward_modules=ctx.feedforward_pattern or [],
        modules_to_save=ctx.modules_to_save,
        **_options(cfg, method),
    )


def _adalora(cfg: Config, method: Method, ctx: PeftContext) -> Any:
    """AdaLoRA: starts every adapted matrix at `init_r` and prunes the total rank budget down to an
    average of `lora_r` between `tinit` and `total - tfinal` steps (given as fractions of the run)."""
    from peft import AdaLoraConfig

    opts = _options(cfg, method)
    total = max(ctx.total_steps, 1)
    tinit = int(float(opts.pop("tinit_fraction", 0.1)) * total)
    tfinal = int(float(opts.pop("tfinal_fraction", 0.2)) * total)
    if tinit + tfinal >= total:  # a very short run: no room for a budget schedule, so keep the ranks fixed
        tinit, tfinal = 0, total - 1
    return AdaLoraConfig(
        target_r=cfg.lora_r,
        init_r=int(opts.pop("init_r", max(cfg.lora_r * 3 // 2, cfg.lora_r))),
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=ctx.pattern,
        modules_to_save=ctx.modules_to_save,
        total_step=total,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=int(opts.pop("deltaT", 10)),
        **opts,
    )


def _adalora_step(model: Any, step: int) -> None:
    """peft's rank allocation: after backward and the optimizer step, before gradients are zeroed."""
    model.base_model.update_and_allocate(step)


# one builder per peft type; a method names its type in the method table
BUILDERS: dict[str, Callable[[Config, Method, PeftContext], Any]] = {
    "LORA": _lora,
    "IA3": _ia3,
    "ADALORA": _adalora,
}
# called after each optimizer step with (peft model, global step), for the types that need it
ON_STEP: dict[str, Callable[[Any, int], None]] = {"ADALORA": _adalora_step}


def on_step(method: Method) -> Callable[[Any, int], None] | None:
    """The method's hook after each optimizer step (AdaLoRA's rank allocation), or None."""
    return ON_STEP.get(method.peft_type or "")


def encoder_options(method: Method) -> dict[str, Any]:
    """Extra `from_pretrained` options of the method's base model: NF4 4-bit weights (bitsandbytes),
    computed in fp32, for a quantized method; {} otherwise."""
    if not method.quantized:
        return {}
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise UserError(
            f"--method {method.name} needs bitsandbytes. Run: pip install 'intentlab[{method.extra}]'."
        ) from None
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    return {"quantization_config": config}


def recorded_encoder_options(info: ModelInfo) -> dict[str, Any]:
    """How a saved run's base loads (QLoRA: in 4 bits), from its recorded method; {} for runs of
    unknown or other methods."""
    from intentlab.methods import METHODS

    method = METHODS.get(info.method)
    return encoder_options(method) if method else {}


def head_modules(cfg: Config) -> list[str]:
    """Modules trained (and saved) besides the adapter: the classifier, plus the pooler if asked."""
    return ["classifier", "pooler"] if cfg.pooling == "cls" and cfg.train_pooler else ["classifier"]


def expand_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """`all-linear` -> every linear layer inside the encoder's layers (never the pooler or head).

    peft's own `all-linear` only works on transformers `PreTrainedModel`s, and our wrapper is not one.
    Names are returned relative to a layer (`attention.self.query`).
    """
    if [t.lower() for t in targets] != ["all-linear"]:
        return targets
    names = set()
    for name, module in model.encoder.named_modules():
        if isinstance(module, nn.Linear) and "pooler" not in name:
            names.add(re.sub(r"^.*?\.\d+\.", "", name))
    return sorted(names)


def adapted_layers(model: nn.Module, top: int | None) -> list[int] | None:
    """The indices of the encoder layers that get adapters: the top `top` (`adapter_layers`), or None
    for every layer (also when `top` is the encoder's depth or more: a shipped count fits any encoder).
    Layers below the lowest adapted one have nothing to train and no trainable input, so autograd never
    runs backward through them."""
    depth = int(model.encoder.config.num_hidden_layers)
    if top is None or top >= depth:
        return None
    return list(range(depth - top, depth))


def target_pattern(model: nn.Module, targets: list[str], layers: list[int] | None = None) -> str:
    """A regular expression (peft full-matches it) for the encoder's linear layers named by `targets`,
    written with this wrapper's module paths (`encoder.encoder.layer.N....`), in every layer or in
    `layers` only."""
    number = r"\d+" if layers is None else "(?:" + "|".join(str(i) for i in layers) + ")"
    found: set[str] = set()
    matched: set[str] = set()
    for name, module in model.encoder.named_modules():
        if not isinstance(module, nn.Linear) or "pooler" in name:
            continue
        hits = [t for t in targets if name == t or name.endswith("." + t)]
        if hits:
            matched.update(hits)
            parts = re.split(r"\.\d+\.", "encoder." + name)  # layer numbers become \d+
            found.add(rf"\.{number}\.".join(re.escape(p) for p in parts))
    missing = [t for t in targets if t not in matched]
    if not found or missing:
        raise UserError(
            f"target_modules {missing or targets} match no linear layer of the encoder. "
            "Use layer names such as query,value or all-linear."
        )
    return "(?:" + "|".join(sorted(found)) + ")"


def peft_config(cfg: Config, model: nn.Module, total_steps: int = 1) -> Any:
    """The peft config of an adapter method, built by the builder of its peft type."""
    method = get(cfg.method)
    assert method.peft_type is not None, f"{cfg.method} is not an adapter method"
    targets = expand_targets(model, cfg.target_modules)
    layers = adapted_layers(model, cfg.adapter_layers)
    pattern = target_pattern(model, targets, layers)
    feedforward = [m for m in cfg.feedforward_modules if m in targets]
    ff_pattern = target_pattern(model, feedforward, layers) if feedforward else None
    ctx = PeftContext(pattern, head_modules(cfg), total_steps, ff_pattern)
    try:
        return BUILDERS[method.peft_type](cfg, method, ctx)
    except (TypeError, ValueError) as e:
        raise UserError(
            f"{cfg.method}: bad adapter settings ({str(e).splitlines()[0][:200]}). Check peft_options and the lora_* settings."
        ) from None
