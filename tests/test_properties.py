"""Property-based tests (hypothesis): no input to the data loader or the config may produce a traceback —
the result is a valid dataset/config or a one-line UserError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intentlab import config as C
from intentlab import data as D
from intentlab.errors import UserError

texts = st.text(min_size=0, max_size=30)
labels = st.sampled_from(["a", "b", "c", "", " ", "a,b", '"q"', "é", "\n"])
cells = st.one_of(
    texts,
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_dataset(path: Path) -> None:
    try:
        ds = D.load_dataset(str(path), seed=0)
    except UserError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert len(ds.labels) >= 2 and len(ds.validation) > 0 and len(ds.test) > 0
    assert set(ds.validation.labels) | set(ds.test.labels) <= set(ds.labels)
    assert all(t.strip() for t in ds.train.texts + ds.validation.texts + ds.test.texts)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([".csv", ".jsonl", ".tsv", ".json"]))
def test_arbitrary_bytes_never_crash_the_loader(blob: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        path.write_bytes(blob)
        check_dataset(path)


@SETTINGS
@given(st.lists(st.tuples(texts, labels), max_size=40))
def test_arbitrary_rows_never_crash_the_loader(rows: list[tuple[str, str]]) -> None:
    import csv

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
        check_dataset(path)


@SETTINGS
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["text", "label", "intent", "x"]), cells, max_size=3), max_size=30
    )
)
def test_arbitrary_jsonl_objects_never_crash_the_loader(objs: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.jsonl"
        path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
        check_dataset(path)


@SETTINGS
@given(st.dictionaries(st.sampled_from([*C.FIELDS, "bogus", "learning_rate"]), cells, max_size=6))
def test_arbitrary_config_values_validate_or_fail_cleanly(overrides: dict[str, object]) -> None:
    try:
        cfg = C.merge(C.Config(method="lora"), overrides, "fuzz")
        C.validate(cfg)
    except UserError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert cfg.epochs >= 1 and cfg.lr > 0 and cfg.batch_size >= 1 and cfg.method in C.METHODS


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_yaml_files_fail_cleanly(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            C.resolve(None, str(path), {})
        except UserError as e:
            assert "\n" not in str(e)
