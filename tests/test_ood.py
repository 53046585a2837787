"""Out-of-scope detection: the scorers, the threshold rule, calibration, the stored state, and the
same decisions from predict, evaluate and serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_args
from intentlab.cli import main
from intentlab.inference import calibration
from intentlab.inference import ood as O
from intentlab.inference.metrics import separation


def planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three tight in-scope clusters and, far from them, an out-of-scope cluster; logits that are
    confident on in-scope texts and flat on out-of-scope ones."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, 8))
    y = np.repeat(np.arange(3), 40)
    train = centres[y] + rng.normal(0, 0.5, (120, 8))
    test_in = centres[np.repeat(np.arange(3), 10)] + rng.normal(0, 0.5, (30, 8))
    test_out = rng.normal(0, 0.5, (30, 8)) + 20
    feats = np.vstack([test_in, test_out])
    logits = np.vstack([np.eye(3)[np.repeat(np.arange(3), 10)] * 6, rng.normal(0, 0.3, (30, 3))])
    y_test = np.r_[np.repeat(np.arange(3), 10), -np.ones(30, dtype=int)]
    return train, y, feats, logits, y_test


@pytest.mark.parametrize("scorer", O.SCORERS)
def test_every_scorer_separates_a_planted_cluster(scorer: str) -> None:
    train, y, feats, logits, y_test = planted()
    state = O.fit(train, y, 3, k=5, temperature=1.0)
    s = state.score(scorer, logits, feats)
    assert separation(s[y_test >= 0], s[y_test < 0])["auroc"] > 0.99


def test_the_threshold_rule_is_reproducible_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(O, "FEW_OOS", 10)  # planted() has 30 out-of-scope rows: enough here
    train, y, feats, logits, y_test = planted()
    state = O.fit(train, y, 3, k=5, temperature=1.0)
    a = O.choose(state, y_test, logits, feats, 0.95)
    b = O.choose(O.fit(train, y, 3, k=5, temperature=1.0), y_test, logits, feats, 0.95)
    assert a.thresholds == b.thresholds and a.chosen == b.chosen
    assert "best macro-F1" in a.rule and a.chosen in a.scorers
    pred = logits.argmax(1)
    assert (
        O.macro_f1_with_oos(
            y_test, O.decisions(pred, a.score(a.chosen, logits, feats), a.thresholds[a.chosen])
        )
        == 1.0
    )
    # without out-of-scope rows: keep the target share of in-scope texts
    inscope = y_test >= 0
    c = O.choose(
        O.fit(train, y, 3, k=5, temperature=1.0), y_test[inscope], logits[inscope], feats[inscope], 0.9
    )
    kept = c.score(c.chosen, logits[inscope], feats[inscope]) >= c.thresholds[c.chosen]
    assert (
        abs(kept.mean() - 0.9) <= 1 / inscope.sum() and "keep 90%" in c.rule and c.chosen == O.DEFAULT_SCORER
    )


def test_with_few_out_of_scope_rows_the_scorer_is_chosen_by_auroc() -> None:
    """30 out-of-scope rows (fewer than FEW_OOS) that sit inside the in-scope clusters: the feature
    scorers cannot see them, the flat logits give them away. The choice follows validation AUROC and
    the thresholds keep the target share of in-scope texts."""
    train, y, feats, logits, y_test = planted()
    rng = np.random.default_rng(1)
    out = y_test < 0
    feats[out] = O.fit(train, y, 3, k=5, temperature=1.0).class_means[rng.integers(0, 3, out.sum())]
    logits[~out] += rng.normal(0, 0.3, logits[~out].shape)  # no ties among in-scope scores
    state = O.choose(O.fit(train, y, 3, k=5, temperature=1.0), y_test, logits, feats, 0.9)
    auroc = {}
    for name in state.scorers:
        s = state.score(name, logits, feats)
        auroc[name] = separation(s[~out], s[out])["auroc"]
        assert abs((s[~out] >= state.thresholds[name]).mean() - 0.9) <= 1 / (~out).sum()
    assert state.chosen == max(auroc, key=lambda n: (auroc[n], n == O.DEFAULT_SCORER))
    assert auroc[state.chosen] > 0.99 > auroc[O.DEFAULT_SCORER]  # not the default: the data decided
    assert state.rule.startswith("only 30 out-of-scope validation rows") and "keep 90%" in state.rule


def test_calibration_lowers_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    logits = rng.normal(0, 1, (2000, 5))
    right = rng.random(2000) < 0.7  # 70% accurate ...
    logits[np.arange(2000), np.where(right, y, (y + 1) % 5)] += 2.0
    logits *= 8  # ... but sure of itself
    from scipy.special import softmax

    before = calibration.reliability(softmax(logits, axis=1), y)["ece"]
    t = calibration.fit_temperature(logits, y)
    after = calibration.reliability(softmax(logits / t, axis=1), y)["ece"]
    assert t > 2 and after < before / 3, (t, before, after)


def test_the_fitted_state_round_trips_and_corruption_is_refused(tmp_path: Path) -> None:
    from intentlab.errors import UserError

    train, y, feats, logits, y_test = planted()
    state = O.choose(O.fit(train, y, 3, k=5, temperature=1.7), y_test, logits, feats, 0.95)
    O.save(state, tmp_path / "ood", {})
    back = O.load(tmp_path, 3)
    assert back is not None and (back.thresholds, back.chosen, back.k, back.temperature) == (
        state.thresholds,
        state.chosen,
        5,
        1.7,
    )
    for name in state.scorers:
        np.testing.assert_allclose(
            back.score(name, logits, feats), state.score(name, logits, feats), rtol=1e-4, atol=1e-4
        )
    meta = json.loads((tmp_path / "ood" / "ood.json").read_text())
    (tmp_path / "ood" / "ood.json").write_text(json.dumps({**meta, "chosen": "rm -rf"}))
    with pytest.raises(UserError, match="corrupt"):
        O.load(tmp_path, 3)
    assert not list((tmp_path / "ood").glob("*.pkl"))


@pytest.fixture(scope="module")
def oos_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, oos_data: str) -> Path:
    out = tmp_path_factory.mktemp("ood") / "run"
    args = [*tiny_args(tiny_model, oos_data, 3), "--group-column", "source"]
    assert main(["train", "--method", "full", "--out", str(out), *args]) == 0
    return out


def test_training_fits_the_scorers_when_validation_holds_oos_rows(oos_run: Path) -> None:
    result = json.loads((oos_run / "result.json").read_text())
    ood = result["ood"]
    assert set(ood["scorers"]) == set(O.SCORERS) and ood["chosen"] in O.SCORERS
    assert ood["oos_rows"] == {"validation": 8, "test": 8}
    assert result["test"]["n"] == 24  # closed-set metrics on the in-scope rows only
    chosen = ood["scorers"][ood["chosen"]]
    assert 0 <= chosen["auroc"] <= 1 and set(chosen["groups"]) == {"ood-oos"}
    assert (oos_run / "ood" / "state.safetensors").is_file() and (
        oos_run / "ood" / "test_decisions.json"
    ).is_file()
    preds = json.loads((oos_run / "test_predictions.json").read_text())
    assert len(preds["y_true"]) == 24 and min(preds["y_true"]) >= 0


def test_predict_evaluate_and_serve_agree_on_out_of_scope(oos_run: Path, oos_data: str) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.data import dataset_for
    from intentlab.inference.evaluate import evaluate_run
    from intentlab.inference.opener import open_run
    from intentlab.runs import read_config
    from intentlab.serving.app import create_app

    ds = dataset_for(read_config(oos_run))
    texts = ds.test.texts
    predicted = open_run(oos_run).classify(texts, top_k=2)
    evaluated = evaluate_run(oos_run)["out_of_scope"]
    with TestClient(create_app([str(oos_run)])) as client:
        served = client.post("/v1/predict", json={"texts": texts, "top_k": 2}).json()["predictions"]
    assert [p.out_of_scope for p in predicted] == evaluated == [s["out_of_scope"] for s in served]
    assert [p.score for p in predicted] == [s["score"] for s in served]
    # a threshold override moves the decision the same way everywhere
    from intentlab.inference.predictor import SCORE_RANGES

    high = min(SCORE_RANGES.get(predicted[0].scorer, (0, 1e9))[1], 1e9)  # the top of the scorer's range
    moved = open_run(oos_run).classify(texts, 1, threshold=high)
    assert [p.out_of_scope for p in moved] == [p.score < high for p in predicted]
    assert sum(p.out_of_scope for p in moved) > sum(p.out_of_scope for p in predicted)


def test_threshold_overrides_are_checked(oos_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.inference.opener import open_run
    from intentlab.serving.app import create_app

    scorer = open_run(oos_run).ood.chosen
    bad = 2.0 if scorer in ("msp", "knn") else float("inf")
    if np.isfinite(bad):
        assert main(["predict", str(oos_run), "hello", "--threshold", str(bad)]) == 2
        assert "outside the range" in capsys.readouterr().err
    with TestClient(create_app([str(oos_run)], admin_token="t")) as client:
        raw = b'{"texts": ["hi"], "threshold": ' + (b"2.0" if np.isfinite(bad) else b"1e400") + b"}"
        r = client.post("/v1/predict", content=raw)
        said = "outside the range" if np.isfinite(bad) else "not a finite number"  # never "[-inf, inf]"
        assert r.status_code == 422 and said in r.json()["detail"]
        auth = {"Authorization": "Bearer t"}
        r = client.put(
            "/v1/adapters/run/threshold", json={"threshold": -0.5 if scorer == "msp" else 0.0}, headers=auth
        )
        assert r.status_code == (422 if scorer == "msp" else 200), r.text  # msp lives in [0, 1]
        if r.status_code == 200:
            assert r.json()["out_of_scope"]["threshold"] == 0.0
        r = client.put("/v1/adapters/run/threshold", json={"threshold": None}, headers=auth)
        assert (
            r.status_code == 200
            and r.json()["out_of_scope"]["threshold"] == r.json()["out_of_scope"]["fitted_threshold"]
        )


def test_refitting_with_the_ood_command(
    oos_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(oos_run, run)
    shutil.rmtree(run / "ood")
    assert main(["ood", str(run), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "mahalanobis" in out
    assert json.loads((run / "result.json").read_text())["ood"]["k"] == 3


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("oos-in-train", "out-of-scope row(s) (label 'oos')"),
        ("no-group-column", "no group column 'nope'"),
        ("no-inscope-validation", "no in-scope rows"),
    ],
)
def test_bad_out_of_scope_input(
    case: str, needle: str, tmp_path: Path, tiny_model: str, oos_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import make_rows, write_oos_csv

    data = tmp_path / "d"
    shutil.copytree(oos_data, data)
    args = ["train", "--method", "head", "--out", str(tmp_path / "r"), *tiny_args(tiny_model, str(data), 1)]
    if case == "oos-in-train":
        write_oos_csv(data / "train.csv", [*make_rows(10, seed=1), {"text": "sing a song", "label": "oos"}])
    elif case == "no-group-column":
        args += ["--group-column", "nope"]
    else:
        write_oos_csv(data / "validation.csv", [{"text": "play music", "label": "oos"}] * 3)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_oos_as_class_trains_it_as_an_intent(tmp_path: Path, tiny_model: str, oos_data: str) -> None:
    from conftest import OUT_OF_SCOPE, make_rows, write_oos_csv

    data = tmp_path / "d"
    shutil.copytree(oos_data, data)
    write_oos_csv(
        data / "train.csv",
        [*make_rows(10, seed=1), *({**r, "label": "oos"} for r in make_rows(5, 9, OUT_OF_SCOPE))],
    )
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--method",
                "head",
                "--out",
                str(out),
                *tiny_args(tiny_model, str(data), 1),
                "--oos-as-class",
            ]
        )
        == 0
    )
    assert "oos" in json.loads((out / "model" / "labels.json").read_text())["labels"]
    assert "ood" not in json.loads((out / "result.json").read_text())  # no out-of-scope rows: nothing to fit
