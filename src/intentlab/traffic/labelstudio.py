"""Label Studio's formats (a well-documented JSON, written here without its SDK): the task file that
`review` writes, with the model's guesses as pre-annotations, the labelling config, and reading an
export (or the review CSV filled in by hand) back into intentlab's text,label rows.

Task:    {"data": {"text": ...}, "predictions": [{"model_version", "score",
          "result": [{"from_name": "intent", "to_name": "text", "type": "choices",
                      "value": {"choices": [label]}}]}]}
Export:  the same tasks with "annotations": [{"result": [...same shape...], "was_cancelled": bool}]
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Any

from intentlab.errors import UserError

FROM, TO = "intent", "text"  # the labelling config's <Choices name> and <Text name>


def config_xml(labels: list[str], oos_label: str) -> str:
    """A labelling config: the text and one choice per intent, plus out of scope."""
    choices = "\n".join(
        f'    <Choice value="{html.escape(label, quote=True)}"/>' for label in [*labels, oos_label]
    )
    return (
        "<View>\n"
        f'  <Text name="{TO}" value="$text"/>\n'
        f'  <Choices name="{FROM}" toName="{TO}" choice="single" showInline="false">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def task(
    text: str, guesses: list[tuple[str, float]], model_version: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """One task, pre-annotated with the model's top guess (its probability as the score)."""
    label, p = guesses[0]
    result = [{"from_name": FROM, "to_name": TO, "type": "choices", "value": {"choices": [label]}}]
    return {
        "data": {"text": text, **{k: v for k, v in meta.items() if isinstance(v, str | int | float)}},
        "predictions": [{"model_version": model_version, "score": round(float(p), 5), "result": result}],
    }


def _choice(annotation: Any) -> str | None:
    if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
        return None
    for r in annotation.get("result") or []:
        value = r.get("value") if isinstance(r, dict) else None
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], str):
            return choices[0]
    return None


def read_labelled(path: Path, oos_label: str = "oos") -> tuple[list[dict[str, str]], int]:
    """text,label rows from a Label Studio JSON export (the last annotation of each task), or from the
    review CSV with its `label` column filled in; tasks without a label are skipped and counted.
    Labels like "out of scope" or "none" become `oos_label`."""
    from intentlab.runs.safe_files import read_json

    suffix = path.suffix.lower()
    rows, skipped = [], 0
    if suffix == ".json":
        tasks = read_json(path, max_bytes=2**30)
        if not isinstance(tasks, list):
            raise UserError(f"{path} is not a Label Studio export (a JSON list of tasks). Export as JSON.")
        for t in tasks:
            text = (t.get("data") or {}).get("text") if isinstance(t, dict) else None
            labels = [_choice(a) for a in (t.get("annotations") or [])] if isinstance(t, dict) else []
            labels = [x for x in labels if x]
            if isinstance(text, str) and text.strip() and labels:
                rows.append({"text": text, "label": _label(labels[-1], oos_label)})
            else:
                skipped += 1
    elif suffix == ".csv":
        try:
            reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise UserError(
                    f"{path} needs a text and a label column (the review CSV with label filled in)."
                )
            for r in reader:
                if (r.get("text") or "").strip() and (r.get("label") or "").strip():
                    rows.append({"text": r["text"], "label": _label(r["label"], oos_label)})
                else:
                    skipped += 1
        except (csv.Error, UnicodeDecodeError) as e:
            raise UserError(f"{path} is not a readable UTF-8 CSV ({e}). Fix the file.") from None
    else:
        raise UserError(
            f"{path}: --import reads a Label Studio JSON export or the review CSV, not {suffix!r}."
        )
    if not rows:
        raise UserError(f"{path} holds no labelled task. Label some, export again, then import.")
    return rows, skipped


OOS_SYNONYMS = {"out of scope", "out-of-scope", "oos", "none", "none of these", "other"}


def _label(value: str, oos_label: str) -> str:
    value = value.strip()
    return oos_label if value.lower() in OOS_SYNONYMS else value
