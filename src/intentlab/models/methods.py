"""The method table: every fine-tuning method is one entry of data, as in peft's `method_comparison`.

An entry says how a method trains (its peft config builder, or none), how its weights are stored,
which trainer runs it, and how reports show it (label, prose name, colour, order, what it is compared
against). Nothing else in intentlab branches on a method's name: adding a method is one entry here,
its `configs/<method>.yaml` and its tests.

This module imports neither torch nor peft (reports read it); builders import peft when called.

    from intentlab.models.methods import get
    get("lora").label        # 'LoRA'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intentlab.config import Config

# How a method's trained weights are stored in `<run>/model/` (see models/io.py):
#   full: every weight; head: only the trained head; adapter: a peft adapter folder; tfidf: the baseline
ALL_WEIGHTS, HEAD_ONLY, ADAPTER, TFIDF = "full", "head", "adapter", "tfidf"
STORAGES = (ALL_WEIGHTS, HEAD_ONLY, ADAPTER, TFIDF)
LOOP = "intentlab.training.loop:train"
BASELINE = "intentlab.training.baseline:train_baseline"


@dataclass(frozen=True)
class PeftContext:
    """What a peft config builder may use besides the run config."""

    pattern: str  # the adapted linear layers as one full-path regex (what peft is given)
    modules_to_save: list[str]  # the head (and pooler): saved with the adapter
    total_steps: int  # optimizer steps of the whole run (AdaLoRA's budget schedule needs it)
    feedforward_pattern: str | None = None  # IA3: the adapted layers that are feed-forward layers


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # in tables and chart legends
    prose: str  # in generated sentences ("full fine-tuning")
    colour: str  # the same in every chart
    storage: str  # one of STORAGES
    trainer: str = LOOP  # "module:function" that trains a run of this method
    peft: Callable[[Config, PeftContext], Any] | None = None  # adapter methods: builds the peft config
    on_step: Callable[[Any, int], None] | None = None  # called after each optimizer step (peft model, step)
    encoder_options: Callable[[], dict[str, Any]] | None = (
        None  # extra from_pretrained options (QLoRA: 4-bit)
    )
    needs_targets: bool = False  # uses target_modules
    compare_with: tuple[str, ...] = ()  # methods the report pairs it with (besides the baseline)
    floor: bool = False  # the classical baseline every method must beat
    headline: bool = False  # its comparison leads the report (the study's question: LoRA vs full)
    default_compare: bool = True  # part of `intentlab compare` without --methods
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def encoder(self) -> bool:
        """True for methods that fine-tune or use a BERT-family encoder (everything but the baseline)."""
        return self.storage != TFIDF

    @property
    def adapter(self) -> bool:
        return self.peft is not None


def _options(cfg: Config) -> dict[str, Any]:
    return dict(cfg.peft_options or {})


def _lora(cfg: Config, ctx: PeftContext, dora: bool = False) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=ctx.pattern,
        use_dora=dora,
        modules_to_save=ctx.modules_to_save,
        **_options(cfg),
    )


def _dora(cfg: Config, ctx: PeftContext) -> Any:
    return _lora(cfg, ctx, dora=True)


def _ia3(cfg: Config, ctx: PeftContext) -> Any:
    from peft import IA3Config

    return IA3Config(
        target_modules=ctx.pattern,
        feedforward_modules=ctx.feedforward_pattern or [],
        modules_to_save=ctx.modules_to_save,
        **_options(cfg),
    )


def _adalora(cfg: Config, ctx: PeftContext) -> Any:
    """AdaLoRA: starts every adapted matrix at `init_r` and prunes the total rank budget down to an
    average of `lora_r` between `tinit` and `total - tfinal` steps (given as fractions of the run)."""
    from peft import AdaLoraConfig

    opts = _options(cfg)
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


def _four_bit() -> dict[str, Any]:
    """QLoRA's base: NF4 4-bit weights (bitsandbytes), computed in fp32."""
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError:
        from intentlab.errors import UserError

        raise UserError("--method qlora needs bitsandbytes. Run: pip install 'intentlab[qlora]'.") from None
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    return {"quantization_config": config}


def _adalora_step(model: Any, step: int) -> None:
    """peft's rank allocation: after backward and the optimizer step, before gradients are zeroed."""
    model.base_model.update_and_allocate(step)


TABLE: tuple[Method, ...] = (
    Method(
        "baseline",
        "TF-IDF + SVM",
        "the TF-IDF baseline",
        "#4C72B0",
        TFIDF,
        trainer=BASELINE,
        floor=True,
    ),
    Method(
        "head",
        "frozen encoder + head",
        "the frozen encoder + head",
        "#DD8452",
        HEAD_ONLY,
        compare_with=("full",),
    ),
    Method("ia3", "IA3", "IA3", "#55A868", ADAPTER, peft=_ia3, needs_targets=True),
    Method(
        "lora",
        "LoRA",
        "LoRA",
        "#C44E52",
        ADAPTER,
        peft=_lora,
        needs_targets=True,
        compare_with=("full",),
        headline=True,
    ),
    Method(
        "dora", "DoRA", "DoRA", "#8172B3", ADAPTER, peft=_dora, needs_targets=True, compare_with=("lora",)
    ),
    Method(
        "adalora",
        "AdaLoRA",
        "AdaLoRA",
        "#DA8BC3",
        ADAPTER,
        peft=_adalora,
        on_step=_adalora_step,
        needs_targets=True,
        compare_with=("lora",),
    ),
    Method(
        "setfit",
        "SetFit",
        "SetFit",
        "#CCB974",
        ALL_WEIGHTS,
        trainer="intentlab.training.setfit:train_setfit",
        compare_with=("lora",),
        default_compare=False,  # a few-shot method: part of learning curves, not of the default matrix
    ),
    Method(
        "qlora",
        "QLoRA",
        "QLoRA",
        "#8DA0CB",
        ADAPTER,
        peft=_lora,
        encoder_options=_four_bit,
        needs_targets=True,
        compare_with=("lora",),
        default_compare=False,
    ),
    Method("full", "full fine-tuning", "full fine-tuning", "#937860", ALL_WEIGHTS),
)
METHODS: dict[str, Method] = {m.name: m for m in TABLE}
NAMES: tuple[str, ...] = tuple(METHODS)
COMPARE_DEFAULTS: tuple[str, ...] = tuple(
    m.name for m in TABLE if m.default_compare
)  # `compare` sans --methods
OTHER_COLOURS = ("#8C8C8C", "#64B5CD")  # names that are not methods (plan variants) get one of these


def get(name: str) -> Method:
    """The table entry of `name` (a KeyError for unknown names: callers validate user input first)."""
    return METHODS[name]


def order(name: str) -> int:
    """Position of a method in reports; unknown names go last."""
    return NAMES.index(name) if name in METHODS else len(NAMES)


def prose(name: str) -> str:
    """How a sentence names a method (or a plan variant, by its own name); `lora@10` reads
    "LoRA at 10 per intent"."""
    base, _, size = name.partition("@")
    text = METHODS[base].prose if base in METHODS else base
    if not size:
        return text
    return f"{text} at {size} per intent" if "." not in size else f"{text} on {float(size):.0%} of the data"


def colour(name: str) -> str:
    """A method's colour (plan variants: a stable grey or blue); sizes of one method share it."""
    import zlib

    base = name.partition("@")[0]
    return METHODS[base].colour if base in METHODS else OTHER_COLOURS[zlib.crc32(base.encode()) % 2]


def trainer(name: str) -> Callable[..., dict[str, Any]]:
    """The function that trains a run of method `name`."""
    import importlib

    module, func = METHODS[name].trainer.split(":")
    return getattr(importlib.import_module(module), func)


def floor_of(present: Iterable[str]) -> str | None:
    """The floor method (the TF-IDF baseline) among `present` method names, if any."""
    return next((m for m in present if m in METHODS and METHODS[m].floor), None)


def pairs(present: Iterable[str]) -> list[tuple[str, str]]:
    """Method pairs a report compares, among `present` method names: each method against the ones its
    entry names (the headline pair first), then every other method against the floor."""
    have = [m for m in NAMES if m in set(present)]
    named = [(m, ref) for m in have for ref in METHODS[m].compare_with if ref in have]
    named.sort(key=lambda p: not METHODS[p[0]].headline)
    floor = floor_of(have)
    return named + [(m, floor) for m in have if floor and m != floor]
