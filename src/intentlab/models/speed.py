"""The speed paths of the model: starting the encoder at a layer (cached frozen layers), the last
layer for [CLS] alone in training steps, the attention kernel inference runs, and bf16 weights.

Each path gives the same logits and gradients as the plain forward (tests/test_cls_layer.py,
tests/test_frozen.py, tests/test_methods.py); they only do less work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from intentlab.models.cls_layer import cls_row, has_bert_layer


def encoder_layers(encoder: nn.Module) -> nn.ModuleList | None:
    """The encoder's stack of layers where it has BERT's layout (`encoder.layer`) and `run_layers` can
    start it at any layer (transformers 5, whose layers return a tensor), else None."""
    from importlib.util import find_spec

    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    usable = isinstance(layers, nn.ModuleList) and hasattr(encoder, "embeddings")
    # BERT's layer code only: MPNet's layers, for one, take a relative-position bias their encoder computes
    # and passes in, which running them one by one here would leave out
    usable = usable and len(layers) > 0 and has_bert_layer(layers[0])
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


@contextmanager
def inference_attention(model: nn.Module) -> Iterator[None]:
    """Run the block with the attention kernel the inference path runs (transformers' default for the
    encoder, which `load_model` gets), when training steps use another (`attention`; eager under CPU
    bf16). `forward_batches` runs in it, so scores recorded during training equal `intentlab evaluate`'s
    bit for bit: under bf16 the two kernels round differently (0.03 in a probability, 3 of Banking77's
    3,080 test predictions). Models not built by `build_model` (reloads, exports) are left as they are."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # inside peft's wrapper
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
