"""The method table: every fine-tuning method is one entry of data, as in peft's `method_comparison`.

An entry says how a method trains (its trainer regime, its peft type and fixed peft settings, whether
its base is quantized), how its weights are stored (a storage kind, `models/storage.py`), which files
ship with it (`configs/<name>.yaml` and the sweep space `configs/sweep/<name>.yaml`), and how reports
show it (label, prose name, colour, order, what it is compared against). Nothing else in intentlab
branches on a method's name; behaviour hangs off the entry's fields:

    regime     -> training/trainers.py  TRAINERS[regime]       (the function that trains a run)
    storage    -> models/storage.py     STORAGES[storage]      (save, load, merge, export)
    peft_type  -> models/adapters.py    builders per peft type (LoRA, IA3, AdaLoRA)

Adding a method is one entry here, its two config files and nothing else: the tests take their
parametrization from `TABLE`. This module imports nothing but the standard library: reports, the
config and the CLI's help read it on machines without torch.

    from intentlab.methods import get
    get("lora").label        # 'LoRA'
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"

# How a method's trained weights are stored in `<run>/model/`: the kind's name is what `intentlab.json`
# records as `weights`; the classes that save, load, merge and export each kind are `models/storage.py`.
FULL, HEAD, ADAPTER, TFIDF = "full", "head", "adapter", "tfidf"
STORAGE_KINDS = (FULL, HEAD, ADAPTER, TFIDF)
ENCODER_KINDS = (FULL, HEAD, ADAPTER)  # the kinds whose model folder describes an encoder

# Which trainer runs a method (training/trainers.py): the one loop, the TF-IDF fit, or the setfit library.
LOOP, BASELINE, SETFIT = "loop", "baseline", "setfit"
REGIMES = (LOOP, BASELINE, SETFIT)


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # in tables and chart legends
    prose: str  # in generated sentences ("full fine-tuning")
    colour: str  # the same in every chart
    storage: str  # one of STORAGE_KINDS
    regime: str = LOOP  # one of REGIMES
    encoder: bool = True  # fine-tunes or uses a BERT-family encoder (everything but the TF-IDF baseline)
    peft_type: str | None = None  # adapter methods: peft's type, whose builder makes the peft config
    peft_fixed: dict[str, Any] = field(default_factory=dict)  # settings the method fixes (DoRA: use_dora)
    quantized: bool = False  # the base model is loaded in 4 bits (QLoRA; needs the `qlora` extra)
    needs_targets: bool = False  # uses target_modules
    extra: str | None = None  # the pip extra it needs beyond the core install
    compare_with: tuple[str, ...] = ()  # methods the report pairs it with (besides the baseline)
    floor: bool = False  # the classical baseline every method must beat
    headline: bool = False  # its comparison leads the report (the study's question: LoRA vs full)
    default_compare: bool = True  # part of `intentlab compare` without --methods

    @property
    def adapter(self) -> bool:
        """True for methods trained as a peft adapter on a frozen base."""
        return self.peft_type is not None

    @property
    def config_file(self) -> Path:
        """The method's shipped config, `configs/<name>.yaml`."""
        return CONFIGS / f"{self.name}.yaml"

    @property
    def sweep_file(self) -> Path:
        """The method's shipped Optuna search space, `configs/sweep/<name>.yaml`."""
        return CONFIGS / "sweep" / f"{self.name}.yaml"


TABLE: tuple[Method, ...] = (
    Method(
        "baseline",
        "TF-IDF + SVM",
        "the TF-IDF baseline",
        "#4C72B0",
        TFIDF,
        regime=BASELINE,
        encoder=False,
        floor=True,
    ),
    Method(
        "head",
        "frozen encoder + head",
        "the frozen encoder + head",
        "#DD8452",
        HEAD,
        compare_with=("full",),
    ),
    Method("ia3", "IA3", "IA3", "#55A868", ADAPTER, peft_type="IA3", needs_targets=True),
    Method(
        "lora",
        "LoRA",
        "LoRA",
        "#C44E52",
        ADAPTER,
        peft_type="LORA",
        needs_targets=True,
        compare_with=("full",),
        headline=True,
    ),
    Method(
        "dora",
        "DoRA",
        "DoRA",
        "#8172B3",
        ADAPTER,
        peft_type="LORA",
        peft_fixed={"use_dora": True},
        needs_targets=True,
        compare_with=("lora",),
    ),
    Method(
        "adalora",
        "AdaLoRA",
        "AdaLoRA",
        "#DA8BC3",
        ADAPTER,
        peft_type="ADALORA",
        needs_targets=True,
        compare_with=("lora",),
    ),
    Method(
        "setfit",
        "SetFit",
        "SetFit",
        "#CCB974",
        FULL,
        regime=SETFIT,
        extra="setfit",
        compare_with=("lora",),
        default_compare=False,  # a few-shot method: part of learning curves, not of the default matrix
    ),
    Method(
        "qlora",
        "QLoRA",
        "QLoRA",
        "#8DA0CB",
        ADAPTER,
        peft_type="LORA",
        quantized=True,
        extra="qlora",
        needs_targets=True,
        compare_with=("lora",),
        default_compare=False,
    ),
    Method("full", "full fine-tuning", "full fine-tuning", "#937860", FULL),
)
METHODS: dict[str, Method] = {m.name: m for m in TABLE}
NAMES: tuple[str, ...] = tuple(METHODS)
COMPARE_DEFAULTS: tuple[str, ...] = tuple(m.name for m in TABLE if m.default_compare)  # sans --methods
OTHER_COLOURS = ("#8C8C8C", "#64B5CD")  # names that are not methods (plan variants) get one of these


def get(name: str) -> Method:
    """The table entry of `name` (a KeyError for unknown names: callers validate user input first)."""
    return METHODS[name]


def where(**wanted: Any) -> tuple[str, ...]:
    """Names of the methods whose fields (or properties) have the given values, in table order:
    `where(adapter=True)`, `where(regime=LOOP)`. Tests take their parametrization from here."""
    return tuple(m.name for m in TABLE if all(getattr(m, k) == v for k, v in wanted.items()))


def one_per_storage() -> tuple[str, ...]:
    """The first method of each storage kind that needs no extra, in table order: what a test runs once
    per kind."""
    firsts: dict[str, str] = {}
    for m in TABLE:
        if m.extra is None:
            firsts.setdefault(m.storage, m.name)
    return tuple(firsts.values())


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
    base = name.partition("@")[0]
    return METHODS[base].colour if base in METHODS else OTHER_COLOURS[zlib.crc32(base.encode()) % 2]


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
