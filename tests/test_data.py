"""Data: reading and validating files, banking77 lookup, seeded stratified splits, bucketed batches."""

from __future__ import annotations

import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from conftest import make_rows, write_csv
from intentlab import data as D
from intentlab.data import batching as B
from intentlab.errors import UserError

BANKING77 = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def test_folder_with_train_and_test_carves_validation(toy_data: str) -> None:
    ds = D.load_dataset(toy_data, val_fraction=0.1, seed=0)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (108, 12, 32)
    assert ds.labels == sorted(ds.labels) and len(ds.labels) == 4
    assert Counter(ds.validation.labels) == {label: 3 for label in ds.labels}  # stratified
    again = D.load_dataset(toy_data, val_fraction=0.1, seed=0)
    assert again.validation.texts == ds.validation.texts  # seeded
    other = D.load_dataset(toy_data, val_fraction=0.1, seed=1)
    assert other.validation.texts != ds.validation.texts


def test_single_file_gets_validation_and_test(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "all.csv", make_rows(20, seed=3))
    ds = D.load_dataset(str(f), val_fraction=0.1, test_fraction=0.2)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (56, 8, 16)  # val: 10% of what test left
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 80


def test_jsonl_and_custom_columns(tmp_path: Path) -> None:
    import json

    rows = make_rows(10, seed=4)
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"utterance": r["text"], "intent": r["label"]}) + "\n" for r in rows)
    )
    ds = D.load_dataset(str(tmp_path), text_column="utterance")
    assert ds.source["label_column"] is None and len(ds.labels) == 4  # 'intent' found automatically
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 40


def test_explicit_validation_file_is_used(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", make_rows(10, seed=1))
    write_csv(tmp_path / "dev.csv", make_rows(2, seed=2))
    write_csv(tmp_path / "test.csv", make_rows(3, seed=3))
    ds = D.load_dataset(str(tmp_path))
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (40, 8, 12)
    assert ds.source["carved"] == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"text,label\n", "holds no rows"),
        (b"sentence,label\nhi,a\n", "no text column 'text'"),
        (b"text,tag\nhi,a\n", "no label column 'label'"),
        (b"text,label\nhello,a\n   ,b\nhey,b\n", "empty or non-text"),
        (b"text,label\nhello,a\nhey,\n", "no label"),
        (b"text,label\nhello,a\n\xff\xfe bad,b\n", "not UTF-8"),
        (b'text,label\n"unterminated,a\n', "malformed CSV"),
        (b"text,label\nhello,a,extra\n", "more fields than the header"),
        (b"text,label\nhello,a\nhey,a\nhi,a\n", "single label"),
    ],
)
def test_bad_csv(tmp_path: Path, content: bytes, needle: str) -> None:
    f = tmp_path / "data.csv"
    f.write_bytes(content)
    with pytest.raises(UserError, match=needle) as e:
        D.load_dataset(str(f))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"text": "hi", "label": "a"}\n{"text": "hey" "label": "b"}\n', r"data.jsonl:2: invalid JSON"),
        ('["not", "an", "object"]\n', "must hold objects"),
        ('"just a string"\n', "must be an object"),
        ('{"text": 5, "label": "a"}\n{"text": "x", "label": "b"}\n', "empty or non-text"),
    ],
)
def test_bad_jsonl(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "data.jsonl"
    f.write_text(content)
    with pytest.raises(UserError, match=needle):
        D.load_dataset(str(f))


def test_unseen_test_labels_are_an_error(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", make_rows(10, seed=1))
    write_csv(
        tmp_path / "test.csv", [*make_rows(2, seed=2), {"text": "open an account", "label": "new_account"}]
    )
    with pytest.raises(UserError, match=r"test has 1 label.*never seen in train: 'new_account'"):
        D.load_dataset(str(tmp_path))


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither banking77 nor an existing"):
        D.load_dataset(str(tmp_path / "nope.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no train file"):
        D.load_dataset(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="unsupported file type"):
        (tmp_path / "x.txt").write_text("hi")
        D.load_dataset(str(tmp_path / "x.txt"))


def test_banking77_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INTENTLAB_DATA_DIR", raising=False)

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match="--data-dir DIR or set INTENTLAB_DATA_DIR"):
        D.find_banking77(None)
    assert not list((tmp_path / "cache" / "banking77").glob("*.csv"))  # no partial download left
    with pytest.raises(UserError, match=r"lacks banking77.s train\.csv and test\.csv"):
        D.find_banking77(str(tmp_path))
    cache = tmp_path / "cache" / "banking77"
    for name in ("train.csv", "test.csv"):
        (cache / name).write_text("text,category\n")
    assert D.find_banking77(None) == cache
    monkeypatch.setenv("INTENTLAB_DATA_DIR", str(BANKING77))
    assert D.find_banking77(None) == BANKING77
    assert D.find_banking77(str(cache)) == cache  # --data-dir beats the environment


@pytest.mark.skipif(not BANKING77.is_dir(), reason="needs ../shared/data/banking77")
def test_banking77_splits() -> None:
    ds = D.load_dataset("banking77", str(BANKING77))
    assert len(ds.labels) == 77
    assert len(ds.test) == 3080 and len(ds.train) + len(ds.validation) == 10003
    assert 950 <= len(ds.validation) <= 1050


def test_bucket_sampler_covers_every_index_once_with_similar_lengths() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000).tolist()
    s = B.BucketBatchSampler(lengths, batch_size=16, bucket_batches=8, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 63
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert sum(lengths) / padded > 0.9  # < 10% padding, against ~50% for random batches
    assert list(s) == batches  # same epoch, same order
    s.set_epoch(1)
    assert list(s) != batches


def test_collator_pads_to_longest_in_batch() -> None:
    c = B.Collator([[1, 2, 3], [4], [5, 6]], [0, 1, 2], pad_id=0)
    b = c([0, 1])
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [0, 1]


def test_sorted_batches_keep_to_the_token_budget() -> None:
    import numpy as np

    lengths = np.random.default_rng(0).integers(1, 120, size=500).tolist()
    batches = B.sorted_batches(lengths, batch_size=64, max_tokens=1000)
    assert sorted(i for b in batches for i in b) == list(range(500))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)  # longest first, so each batch's first text is its longest
    for b in batches:
        assert len(b) <= 64 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000)
    assert len(batches[0]) == 1000 // max(lengths)
    # long texts go in small batches, short ones fill whole batches
    assert [len(b) for b in B.sorted_batches([100] * 20 + [10] * 130, 64, 1000)] == [10, 10, 64, 64, 2]
    # without a budget, batches are cut by count only
    assert [len(b) for b in B.sorted_batches(lengths, 64)][:7] == [64] * 7
    # a text longer than the budget still gets a batch of its own
    assert B.sorted_batches([5000, 3], 64, max_tokens=1000) == [[0], [1]]


def test_train_accuracy_rows_are_all_or_a_seeded_sample() -> None:
    from intentlab.training.measure import TRAIN_ACCURACY_EXAMPLES, train_accuracy_rows

    assert train_accuracy_rows(100, 0) == list(range(100))
    rows = train_accuracy_rows(9003, 42)
    assert len(rows) == len(set(rows)) == TRAIN_ACCURACY_EXAMPLES and rows == sorted(rows)
    assert rows[0] >= 0 and rows[-1] < 9003
    assert rows == train_accuracy_rows(9003, 42) and rows != train_accuracy_rows(9003, 43)
