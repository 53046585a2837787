"""Typed experiment configuration: the single source of truth for every run.

One flat dataclass, `Config`, holds every knob of a run. Its field docs become CLI help, its YAML form
is what `configs/*.yaml` ship and what each run directory records as `config.yaml`.

Precedence, lowest first: dataclass defaults < the method's shipped config (`configs/<method>.yaml`)
< a user `--config FILE.yaml` < command-line flags. `validate()` collects every problem into one
`UserError` instead of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from intentlab.errors import UserError
from intentlab.methods import LOOP, NAMES, get

METHODS = NAMES  # the method table's names (models/methods.py)
POOLINGS = ("mean", "cls", "mean-l2")  # mean-l2: the mean, L2-normalised (sentence-transformers, SetFit)
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    """Everything that defines a training run."""

    # --- what to train
    name: str | None = _f(None, "label of this run in reports (default: the method)")
    method: str = _f("lora", f"fine-tuning method: {', '.join(METHODS)}")
    model: str = _f(DEFAULT_MODEL, "Hugging Face model id or local path of the encoder")
    pooling: str = _f(
        "mean",
        "sentence pooling: mean (of token states), cls (BERT pooler over [CLS]) or mean-l2 (mean, unit length)",
    )
    train_pooler: bool = _f(True, "with --pooling cls, train the pooler dense layer with the head")
    train_word_embeddings: bool = _f(
        True,
        "full fine-tuning: train the word-embedding matrix too (false keeps it fixed: a batch touches a "
        "few hundred of its rows, yet its dense gradient and optimizer step cost every step)",
    )
    dropout: float = _f(0.1, "dropout before the classifier head")
    encoder_dropout: float | None = _f(
        None, "hidden and attention dropout inside the encoder (default: the model's)"
    )
    # --- data
    data: str = _f("banking77", "dataset: banking77, or a CSV/JSONL file or a folder with train/test files")
    data_dir: str | None = _f(
        None, "folder holding banking77's train.csv/test.csv (else $INTENTLAB_DATA_DIR)"
    )
    text_column: str | None = _f(None, "text column of your data (default: text)")
    label_column: str | None = _f(None, "label column of your data (default: label, intent or category)")
    val_fraction: float = _f(0.1, "fraction of train carved out (stratified, seeded) when no validation file")
    split_seed: int = _f(42, "seed of the validation/test carve-out (shared by runs of every --seed)")
    test_fraction: float = _f(0.1, "fraction of the data held out as test when you give a single file")
    max_length: int = _f(128, "truncate texts to this many tokens (batches are padded dynamically)")
    train_size: str | None = _f(
        None,
        "train on a sample: N examples per intent, or a fraction (0.1); validation is as many unused rows "
        "per intent; the test split stays whole (sampled with --seed)",
    )
    oos_label: str = _f(
        "oos", "label of out-of-scope rows: allowed in validation/test, never a training class"
    )
    oos_as_class: bool = _f(False, "train the out-of-scope label as an ordinary class (a compared variant)")
    group_column: str | None = _f(
        None, "column grouping validation/test rows (e.g. source) for per-group out-of-scope metrics"
    )
    extra_data: str | None = _f(
        None,
        "more labelled training rows (a CSV/JSONL file, or a folder of extra*.csv/jsonl files, e.g. from "
        "`intentlab review --import`); recorded with their checksums; out-of-scope rows are left out",
    )
    # --- optimisation
    epochs: int = _f(5, "training epochs")
    min_steps: int = _f(
        0, "train more epochs when needed for at least this many optimizer steps (small data)"
    )
    lr: float = _f(1e-3, "peak learning rate (AdamW, linear warm-up then linear decay)")
    head_lr: float | None = _f(
        None, "learning rate of the classifier head, and of the pooler when it trains with it (default: --lr)"
    )
    batch_size: int = _f(32, "training batch size (global, across processes)")
    eval_batch_size: int = _f(256, "evaluation batch size (sorted by length)")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm)")
    warmup_ratio: float = _f(0.06, "fraction of steps spent warming the learning rate up")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 disables)")
    patience: int = _f(0, "early stopping: epochs without validation-accuracy gain before stopping (0: off)")
    seed: int = _f(42, "random seed: data split, initialisation, dropout and batch order")
    bf16: bool | None = _f(
        None, "bf16 autocast (weights and optimizer stay fp32); default: on where the hardware has fast bf16"
    )
    compile: bool = _f(False, "torch.compile the model (pays off only for long runs)")
    attention: str | None = _f(
        None,
        "attention kernel of the training steps: sdpa or eager (explicit matmuls) [default: eager under CPU "
        "bf16, else sdpa]; validation and test scores use the inference path's (the model's default)",
    )
    bucket_batches: int = _f(64, "length bucketing: shuffle chunks of this many batches, sort within a chunk")
    checkpoint_steps: int = _f(0, "also write a resumable checkpoint every N steps (0: at epoch ends only)")
    track: str | None = _f(
        None, "experiment tracking: mlflow or tensorboard (default: none, nothing imported)"
    )
    tracking_uri: str | None = _f(
        None, "MLflow tracking URI (default: sqlite:///mlflow.db) or TensorBoard log folder"
    )
    threads: int | None = _f(None, "CPU threads for torch (default: torch's choice, physical cores)")
    # --- out-of-scope detection and calibration (fitted after training; `intentlab ood RUN` refits)
    ood: bool = _f(
        False, "fit out-of-scope scorers after training even when validation has no out-of-scope rows"
    )
    ood_k: int = _f(10, "neighbours of the k-NN out-of-scope scorer")
    ood_target_recall: float = _f(
        0.95, "without out-of-scope rows in validation: keep this share of in-scope validation texts"
    )
    # --- adapters (lora, dora, ia3)
    lora_r: int = _f(8, "LoRA/DoRA rank")
    lora_alpha: float = _f(16.0, "LoRA/DoRA alpha (scale = alpha / r)")
    lora_dropout: float = _f(0.1, "LoRA/DoRA dropout")
    target_modules: list[str] = _f(
        ["query", "value"],
        "adapted modules (name suffixes, comma-separated), or all-linear for every encoder linear layer",
    )
    feedforward_modules: list[str] = _f(["output.dense"], "IA3: which targets are feed-forward layers")
    adapter_layers: int | None = _f(
        None,
        "adapters on the top N encoder layers only; the layers below run forward, never backward "
        "(null, or N >= the encoder's depth: every layer)",
    )
    cache_frozen_layers: bool = _f(
        True,
        "with adapter_layers: compute the frozen layers below the adapters once per training text, not at "
        "every step (exact; on where nothing below them is random or trained and the states fit)",
    )
    cls_last_layer: bool = _f(
        True,
        "with cls pooling: training steps run the encoder's last layer for [CLS] alone, the one position "
        "the classifier reads (same function, float rounding aside; false: the whole layer)",
    )
    # --- distillation (training/distill.py)
    teacher: str | None = _f(
        None,
        "distil from this finished run (any encoder run, any encoder): its logits for the training texts, "
        "computed once and kept in this run, soften the loss",
    )
    distill_alpha: float = _f(
        0.5, "with --teacher: weight of the teacher's soft targets (0: gold labels only, 1: teacher only)"
    )
    distill_temperature: float = _f(
        2.0, "with --teacher: softmax temperature of teacher and student in the soft term (T^2 scales it)"
    )
    # --- SetFit (contrastive fine-tuning of the body on text pairs, then a logistic-regression head)
    setfit_iterations: int = _f(
        20, "SetFit: pairs generated per training text and iteration (the paper's 20)"
    )
    setfit_max_pairs: int = _f(
        8000,
        "SetFit: most text pairs to train the body on (its library default, all pairs, takes hours on a CPU)",
    )
    # --- the TF-IDF baseline
    svm_c: float = _f(
        0.5, "baseline: the linear SVM's regularisation C (larger fits the training data closer)"
    )
    peft_options: dict[str, Any] | None = _f(
        None, "extra keyword arguments of the method's peft config (YAML mapping, or key=value,key=value)"
    )

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


def field_kind(name: str) -> type:
    """The base Python type of a field (int, float, str, bool or list), ignoring Optional."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is not list and args:  # Optional[X]
        hint = args[0]
    origin = typing.get_origin(hint)
    return list if origin is list else dict if origin is dict else hint


def _optional(name: str) -> bool:
    return type(None) in typing.get_args(_HINTS[name])


def coerce(name: str, value: Any) -> Any:
    """Convert a YAML or command-line value to the field's type; raise ValueError if impossible."""
    kind = field_kind(name)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
        if _optional(name):
            return None
        raise ValueError("must be set")
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if kind is list:
        if not isinstance(value, str | list | tuple):
            raise ValueError(f"expected a list or comma-separated text, got {value!r}")
        items = value.split(",") if isinstance(value, str) else list(value)
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in items):
            raise ValueError(f"expected a list of names, got {value!r}")
        return [str(v).strip() for v in items if str(v).strip()]
    if kind is dict:
        return _mapping(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            return int(str(value).strip()) if not isinstance(value, float) else int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, list | dict | bool):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def _yaml_scalar(text: str) -> Any:
    """One `key=value` value parsed as YAML (`3`, `true`, `[a, b]`, text)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{text!r} is not a YAML value ({_first_line(e)})") from None


def _first_line(e: Exception) -> str:
    """An exception's first line (a YAML error's message spans several), or its type where it has none."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _mapping(value: Any) -> dict[str, Any]:
    """A YAML mapping, or `key=value,key=value` from the command line (values parsed as YAML scalars)."""
    if isinstance(value, str):
        pairs = [p for p in value.split(",") if p.strip()]
        if not all("=" in p for p in pairs):
            raise ValueError(f"expected key=value,key=value, got {value!r}")
        value = {k.strip(): _yaml_scalar(v.strip()) for k, v in (p.split("=", 1) for p in pairs)}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ValueError(f"expected a mapping of names to values, got {value!r}")
    if not all(v is None or isinstance(v, str | int | float | bool | list) for v in value.values()):
        raise ValueError(f"expected plain values (numbers, text, lists), got {value!r}")
    return dict(value)


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def merge(base: Config, overrides: dict[str, Any], source: str) -> Config:
    """Apply `overrides` (from YAML or flags) onto `base`, listing every unknown key or bad value."""
    problems = []
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            problems.append(f"unknown key {key!r}{_suggest(name)}")
            continue
        try:
            changes[name] = coerce(name, value)
        except ValueError as e:
            problems.append(f"{key}: {e}")
    if problems:
        raise UserError(f"{source}: {'; '.join(problems)}. Fix these keys (see `intentlab train --help`).")
    return base.replace(**changes)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a config never needs them, and a few hundred bytes of nested
    aliases (a "billion laughs") expand into more than any machine can walk."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in intentlab files", event.start_mark
            )
        return super().compose_node(parent, index)


MAX_YAML_BYTES = 1 * 2**20


def read_yaml(path: str | Path, option: str = "--config") -> dict[str, Any]:
    """Read a YAML mapping (at most 1 MB, no aliases), turning every failure into a one-line UserError
    (naming `option`, where the path came from, when the file is missing)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} not found. Pass an existing YAML file to {option}.")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise UserError(
            f"config file {p} is over {MAX_YAML_BYTES:,} bytes; a config is a few lines. Check the file."
        )
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except RecursionError:
        raise UserError(f"config file {p} is nested too deeply to be a config. Fix it.") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(
            f"config file {p} is not valid UTF-8 YAML ({_first_line(e)}). Fix its syntax."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of key: value, not {type(data).__name__}.")
    return data


def shipped_config_path(name: str) -> Path:
    """Path of a config shipped with the package (`configs/<name>.yaml`)."""
    return Path(str(resources.files("intentlab") / "configs" / f"{name}.yaml"))


def shipped_config_names() -> list[str]:
    folder = resources.files("intentlab") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve(method: str | None, config_file: str | None, flags: dict[str, Any]) -> Config:
    """Build the final Config from a method name, an optional YAML file and flag overrides."""
    user = read_yaml(config_file) if config_file else {}
    file_method = user.get("method")
    if method and file_method and str(file_method) != method:
        raise UserError(
            f"--method {method} contradicts method: {file_method} in {config_file}. "
            "Drop --method or use a config for that method."
        )
    chosen = method or file_method
    if chosen is None:
        raise UserError(
            "no method given. Pass --method {" + ",".join(METHODS) + "} or a --config with method:."
        )
    chosen = str(chosen)
    if chosen not in METHODS:
        raise UserError(f"unknown method {chosen!r}. Choose one of: {', '.join(METHODS)}.")
    cfg = merge(Config(), read_yaml(get(chosen).config_file), f"shipped config {chosen}.yaml")
    if user:
        cfg = merge(cfg, user, str(config_file))
    cfg = merge(cfg, {k: v for k, v in flags.items() if v is not None}, "command line")
    cfg = absolute_paths(cfg.replace(method=chosen))
    validate(cfg)
    return cfg


def absolute_paths(cfg: Config) -> Config:
    """Data paths, and a model given as a local folder, as absolute paths, so a recorded run works from
    any folder (a Hugging Face id stays an id: transformers loads a local folder of that name first)."""
    changes: dict[str, Any] = {}
    if cfg.model and Path(cfg.model).expanduser().is_dir():
        changes["model"] = str(Path(cfg.model).expanduser().resolve())
    if cfg.data != "banking77" and Path(cfg.data).expanduser().exists():
        changes["data"] = str(Path(cfg.data).expanduser().resolve())
    if cfg.data_dir:
        changes["data_dir"] = str(Path(cfg.data_dir).expanduser().resolve())
    if cfg.extra_data and Path(cfg.extra_data).expanduser().exists():
        changes["extra_data"] = str(Path(cfg.extra_data).expanduser().resolve())
    if cfg.teacher and Path(cfg.teacher).expanduser().exists():
        changes["teacher"] = str(Path(cfg.teacher).expanduser().resolve())
    return cfg.replace(**changes) if changes else cfg


def parse_train_size(text: str | None) -> int | float | None:
    """'10' -> 10 examples per intent; '0.25' -> a quarter of each intent; 'all' or None -> everything.
    ValueError (naming the problem) for 0, negative sizes and fractions above 1."""
    if text is None or str(text).strip().lower() in ("all", "none", ""):
        return None
    t = str(text).strip()
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"must be a count per intent, a fraction or all, got {text!r}") from None
    if value <= 0 or not math.isfinite(value):
        raise ValueError(f"must be positive, got {text!r}")
    if "." in t or "e" in t.lower():
        if value > 1:
            raise ValueError(f"as a fraction must be at most 1, got {text!r}")
        return None if value == 1 else value
    return int(value)


def validate(cfg: Config) -> None:
    """Check every field; raise one UserError listing all problems."""
    p: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            p.append(msg)

    def finite(name: str) -> bool:
        v = getattr(cfg, name)
        ok = v is None or math.isfinite(v)
        need(ok, f"{name} must be a finite number, got {v}")
        return ok and v is not None

    need(cfg.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    need(cfg.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}, got {cfg.pooling!r}")
    need(bool(cfg.model.strip()), "model must name a Hugging Face id or a local path")
    need(bool(cfg.data.strip()), "data must be banking77 or a path")
    need(cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}")
    need(cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}")
    need(cfg.eval_batch_size >= 1, f"eval_batch_size must be at least 1, got {cfg.eval_batch_size}")
    need(8 <= cfg.max_length <= 8192, f"max_length must be within 8..8192, got {cfg.max_length}")
    need(cfg.patience >= 0, f"patience must be 0 (off) or more, got {cfg.patience}")
    for name in ("seed", "split_seed"):
        value = getattr(cfg, name)
        need(0 <= value < 2**32, f"{name} must be within 0..4294967295 (numpy and torch seeds), got {value}")
    need(
        cfg.track in (None, "mlflow", "tensorboard"),
        f"track must be mlflow or tensorboard, got {cfg.track!r}",
    )
    need(cfg.checkpoint_steps >= 0, f"checkpoint_steps must be 0 or more, got {cfg.checkpoint_steps}")
    need(cfg.bucket_batches >= 1, f"bucket_batches must be at least 1, got {cfg.bucket_batches}")
    need(cfg.threads is None or cfg.threads >= 1, f"threads must be at least 1, got {cfg.threads}")
    need(cfg.lora_r >= 1, f"lora_r must be at least 1, got {cfg.lora_r}")
    need(cfg.ood_k >= 1, f"ood_k must be at least 1, got {cfg.ood_k}")
    need(cfg.attention in (None, "sdpa", "eager"), f"attention must be sdpa or eager, got {cfg.attention!r}")
    need(cfg.min_steps >= 0, f"min_steps must be 0 or more, got {cfg.min_steps}")
    if finite("distill_alpha"):
        need(0 <= cfg.distill_alpha <= 1, f"distill_alpha must be in [0, 1], got {cfg.distill_alpha}")
    if finite("distill_temperature"):
        need(
            cfg.distill_temperature > 0,
            f"distill_temperature must be positive, got {cfg.distill_temperature}",
        )
    if cfg.teacher and cfg.method in METHODS:
        need(
            get(cfg.method).regime == LOOP,
            f"--teacher works with the methods the training loop trains, not {cfg.method}",
        )
    need(math.isfinite(cfg.svm_c) and cfg.svm_c > 0, f"svm_c must be a positive number, got {cfg.svm_c}")
    need(
        cfg.setfit_iterations >= 1 and cfg.setfit_max_pairs >= 1,
        "setfit_iterations and setfit_max_pairs must be at least 1",
    )
    if cfg.train_size is not None:
        try:
            parse_train_size(cfg.train_size)
        except ValueError as e:
            p.append(f"train_size {e}")
    need(bool(cfg.oos_label.strip()), "oos_label must be a label name")
    if finite("ood_target_recall"):
        need(
            0.5 <= cfg.ood_target_recall < 1,
            f"ood_target_recall must be in [0.5, 1), got {cfg.ood_target_recall}",
        )
    for name in ("lr", "head_lr"):
        if finite(name):
            need(getattr(cfg, name) > 0, f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ("weight_decay", "max_grad_norm", "lora_alpha"):
        if finite(name):
            need(getattr(cfg, name) >= 0, f"{name} must be non-negative, got {getattr(cfg, name)}")
    for name in ("val_fraction", "test_fraction"):
        if finite(name):
            need(0 < getattr(cfg, name) <= 0.5, f"{name} must be in (0, 0.5], got {getattr(cfg, name)}")
    if finite("warmup_ratio"):
        need(0 <= cfg.warmup_ratio <= 0.5, f"warmup_ratio must be in [0, 0.5], got {cfg.warmup_ratio}")
    for name in ("dropout", "lora_dropout", "encoder_dropout"):
        if finite(name):
            need(0 <= getattr(cfg, name) < 1, f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.method in METHODS and get(cfg.method).needs_targets:
        need(bool(cfg.target_modules), f"{cfg.method} needs target_modules (e.g. query,value or all-linear)")
    if cfg.adapter_layers is not None:
        need(cfg.adapter_layers >= 1, f"adapter_layers must be at least 1, got {cfg.adapter_layers}")
        need(
            cfg.method not in METHODS or get(cfg.method).needs_targets,
            f"adapter_layers applies to adapter methods "
            f"({', '.join(m for m in METHODS if get(m).needs_targets)}), not {cfg.method}; leave it unset",
        )
    if p:
        raise UserError("invalid config: " + "; ".join(p) + ".")
