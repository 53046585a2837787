"""How two texts are compared as duplicates: Unicode-normalised, lower case, punctuation and runs of
spaces dropped (the audit's duplicates and leaks, the review's merged queries)."""

from __future__ import annotations

import re
import unicodedata


def normalised(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())
