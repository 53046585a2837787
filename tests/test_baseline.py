"""The TF-IDF baseline: stored without pickle, reloaded exactly, any label count, resumable."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from conftest import make_rows, tiny_args, write_csv
from intentlab.cli import main


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "run"
    assert (
        main(["train", "--method", "baseline", "--out", str(out), *tiny_args(tiny_model, toy_data, 1)]) == 0
    )
    return out


def test_saved_as_data_and_reloaded_exactly(baseline_run: Path) -> None:
    from intentlab.data import dataset_for
    from intentlab.inference.opener import open_run
    from intentlab.runs import read_config

    files = sorted(p.name for p in (baseline_run / "model").iterdir())
    assert files == ["README.md", "intentlab.json", "labels.json", "tfidf.json", "tfidf.safetensors"]
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib") for p in baseline_run.rglob("*"))
    ds = dataset_for(read_config(baseline_run))
    recorded = json.loads((baseline_run / "test_predictions.json").read_text())["y_pred"]
    assert open_run(baseline_run).logits(ds.test.texts).argmax(1).tolist() == recorded


def test_an_old_pickled_baseline_is_refused_and_never_unpickled(
    baseline_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import shutil

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "old"
    shutil.copytree(baseline_run, run)
    for name in ("intentlab.json", "labels.json", "tfidf.json", "tfidf.safetensors"):
        (run / "model" / name).unlink()
    (run / "model" / "baseline.pkl").write_bytes(pickle.dumps({"pipeline": Payload(), "labels": ["a"]}))
    for argv in (
        ["predict", str(run), "hello"],
        ["evaluate", str(run)],
        ["export", str(run), "--out", str(tmp_path / "e")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "pickle" in err and "Train it again" in err and "Traceback" not in err
    assert not marker.exists()


def test_two_classes_work(tmp_path: Path, tiny_model: str) -> None:
    data = tmp_path / "two"
    data.mkdir()
    intents = {"yes": ["yes please", "sure thing", "ok do it"], "no": ["no thanks", "stop that", "never"]}
    write_csv(data / "train.csv", make_rows(20, seed=1, intents=intents))
    write_csv(data / "test.csv", make_rows(5, seed=2, intents=intents))
    out = tmp_path / "run"
    assert (
        main(["train", "--method", "baseline", "--out", str(out), *tiny_args(tiny_model, str(data), 1)]) == 0
    )
    from intentlab.inference.opener import open_run

    top = open_run(out).predict(["yes please", "never"], top_k=2)
    assert [row[0][0] for row in top] == ["yes", "no"]


def test_corrupt_arrays_are_a_one_line_error(
    baseline_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    run = tmp_path / "bad"
    shutil.copytree(baseline_run, run)
    arrays = load_file(str(run / "model" / "tfidf.safetensors"))
    arrays["coef"] = np.zeros((2, 3))
    save_file(arrays, str(run / "model" / "tfidf.safetensors"))
    assert main(["predict", str(run), "hello"]) == 2
    assert "shapes do not match" in capsys.readouterr().err


def test_resume_of_an_interrupted_baseline_run_fits_the_baseline(baseline_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "interrupted"
    run.mkdir()
    (run / "config.yaml").write_text((baseline_run / "config.yaml").read_text())  # killed right after setup
    assert main(["train", "--resume", str(run)]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["run"]["method"] == "baseline" and (run / "model" / "tfidf.json").is_file()
