"""The encoder's last layer for [CLS] only: with `[CLS]` pooling a classifier reads one position of the last
layer's output, so its other positions are work that nothing uses.

In that layer only the keys and values need every token (the [CLS] query attends to all of them); the query,
the attention output projection and the feed-forward block, with their backward passes, are needed for the
[CLS] row alone. For a 6-layer MiniLM that is about 14% of a full fine-tuning step's products per token, and
about a third of a LoRA step's when LoRA trains the top 3 layers on cached states. The [CLS] output is the
same function of the weights as the whole layer's first row; only the order of floating-point sums differs.

Used by training steps (`IntentClassifier.features` in train mode) on encoders whose layers have BERT's
code (BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT in transformers 5); other encoders run whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# self-attention classes whose forward is BERT's: query/key/value projections, scaled dot product,
# no relative or rotary positions (checked against transformers 5's sources, which copy BERT's)
BERT_SELF_ATTENTION = {
    "BertSelfAttention",
    "RobertaSelfAttention",
    "XLMRobertaSelfAttention",
    "ElectraSelfAttention",
    "CamembertSelfAttention",
}


def has_bert_layer(layer: nn.Module) -> bool:
    """True when `layer` is an encoder (not decoder) layer with BERT's code, so `cls_row` computes
    exactly its first output row. peft's adapters inside it (LoRA, DoRA, IA3) are called as usual."""
    attention = getattr(layer, "attention", None)
    self_attention = getattr(attention, "self", None)
    return (
        type(self_attention).__name__ in BERT_SELF_ATTENTION
        and hasattr(attention, "output")
        and callable(getattr(layer, "feed_forward_chunk", None))
        and not getattr(layer, "is_decoder", True)
    )


def cls_row(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`layer`'s output at the first position, [batch, 1, width], given its input `hidden` [batch, tokens,
    width] and the 4-D attention mask the encoder built for it (boolean or additive, or None)."""
    attention = layer.attention.self
    batch = hidden.shape[0]
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, size).transpose(1, 2)

    first = hidden[:, :1]
    query = split(attention.query(first))
    key, value = split(attention.key(hidden)), split(attention.value(hidden))
    if mask is not None:
        mask = mask[:, :, :1]  # the [CLS] query's row
        if mask.dtype != torch.bool:
            mask = mask.to(query.dtype)
    out = F.scaled_dot_product_attention(
        query,
        key.to(query.dtype),
        value.to(query.dtype),
        attn_mask=mask,
        dropout_p=attention.dropout.p if attention.training else 0.0,
        scale=attention.scaling,
    )
    out = out.transpose(1, 2).reshape(batch, 1, heads * size)
    return layer.feed_forward_chunk(layer.attention.output(out, first))
