"""Distillation (`train --teacher RUN`): the loss, the teacher's logits kept in the student's run and
read back, the record, and bad teachers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_rows, one_line, tiny_args, write_csv
from intentlab.cli import main


def test_the_soft_term_mixes_cross_entropy_and_the_tempered_kl() -> None:
    from intentlab.training.distill import soft_term

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0])
    ce = F.cross_entropy(student, labels, reduction="sum")
    T, alpha = 3.0, 0.7
    p_teacher = torch.softmax(teacher / T, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / T, -1))).sum()
    mixed = ce + soft_term(student, teacher, labels, alpha, T)
    assert torch.allclose(mixed, (1 - alpha) * ce + alpha * T**2 * kl, atol=1e-5)
    assert soft_term(student, teacher, labels, 0.0, T).abs().item() == 0.0  # alpha 0: gold labels only
    # alpha 1 and a student that already matches the teacher: nothing left but cancelling the CE
    assert torch.allclose(ce + soft_term(student, student, labels, 1.0, T), torch.tensor(0.0), atol=1e-4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> dict:
    """A teacher taught the intents shifted by one (A's texts labelled B...), and the data with the true
    labels: a student that listens to the teacher learns the shift."""
    root = tmp_path_factory.mktemp("distill")
    rows = make_rows(30, seed=1)
    names = sorted({r["label"] for r in rows})
    shift = {a: names[(i + 1) % len(names)] for i, a in enumerate(names)}
    write_csv(root / "shifted.csv", [{**r, "label": shift[r["label"]]} for r in rows])
    (root / "data").mkdir()
    write_csv(root / "data" / "train.csv", rows)
    write_csv(root / "data" / "test.csv", make_rows(8, seed=2))
    teacher = root / "teacher"
    # the packaged MiniLM with the head method: seconds, and features good enough to learn any mapping
    args = [
        "--data",
        str(root / "shifted.csv"),
        "--method",
        "head",
        "--epochs",
        "20",
        "--no-bf16",
        "--threads",
        "1",
    ]
    assert main(["train", *args, "--out", str(teacher)]) == 0
    return {"root": root, "teacher": teacher, "data": str(root / "data"), "shift": shift, "model": tiny_model}


def student(runs: dict, out: Path, alpha: float, *extra: str) -> dict:
    args = ["--data", runs["data"], "--method", "head", "--epochs", "20", "--no-bf16", "--threads", "1"]
    rc = main(
        [
            "train",
            *args,
            "--teacher",
            str(runs["teacher"]),
            "--distill-alpha",
            str(alpha),
            "--out",
            str(out),
            *extra,
        ]
    )
    assert rc == 0
    return json.loads((out / "result.json").read_text())


def agreement(run: Path, texts: list[str]) -> np.ndarray:
    from intentlab.inference.opener import open_run

    return np.array([p[0][0] for p in open_run(run, ood=False).predict(texts)])


def test_a_student_learns_what_its_teacher_says(runs: dict) -> None:
    rows = make_rows(30, seed=1)  # the texts the teacher labelled for the students
    texts, gold = [r["text"] for r in rows], np.array([r["label"] for r in rows])
    told = agreement(runs["teacher"], texts)
    shifted = np.array([runs["shift"][g] for g in gold])
    heard = student(runs, runs["root"] / "alpha1", 1.0, "--epochs", "40")  # soft targets teach slower
    deaf = student(runs, runs["root"] / "alpha0", 0.0)
    follows, learns = agreement(runs["root"] / "alpha1", texts), agreement(runs["root"] / "alpha0", texts)
    assert (told == shifted).mean() > 0.8  # the teacher learnt the shift
    # alpha 1: the teacher only, so the student says what the teacher says; alpha 0: the gold labels
    assert (follows == told).mean() > 0.8 and (learns == gold).mean() > 0.8
    assert heard["test"]["accuracy"] < 0.3 < 0.7 < deaf["test"]["accuracy"]
    assert heard["teacher"]["alpha"] == 1.0 and deaf["teacher"]["alpha"] == 0.0
    # the card and the report show the teacher beside the student
    assert "Distilled from a" in (runs["root"] / "alpha1" / "model" / "README.md").read_text()
    report = runs["root"] / "report"
    assert (
        main(["report", str(runs["root"] / "alpha1"), str(runs["root"] / "alpha0"), "--out", str(report)])
        == 0
    )
    assert "(distilled from teacher: " in (report / "report.md").read_text()


def test_the_teachers_logits_are_kept_checksummed_and_reused(
    runs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.numpy import load_file

    from intentlab.inference.opener import open_run
    from intentlab.training import distill

    out = runs["root"] / "kept"
    other = (
        "--method",
        "lora",
        "--model",
        runs["model"],
        "--epochs",
        "2",
    )  # another encoder than the teacher's
    record = student(runs, out, 0.5, *other)
    teacher = json.loads((runs["teacher"] / "result.json").read_text())
    info = record["teacher"]
    assert info["sha256"] == distill.model_checksum(runs["teacher"]) and not info["reused"]
    assert info["test_accuracy"] == teacher["test"]["accuracy"] and info["method"] == "head"
    kept = load_file(str(out / "teacher" / "logits.safetensors"))["logits"]
    meta = json.loads((out / "teacher" / "teacher.json").read_text())
    assert kept.shape == (info["texts"], 4) and meta["labels"] == sorted(runs["shift"])
    # the columns are in the student's label order, whatever the teacher's
    from intentlab.data.run_data import run_dataset

    ds, _ = run_dataset(out)
    opened = open_run(runs["teacher"], ood=False)
    direct = opened.logits(ds.train.texts)[:, [opened.labels.index(n) for n in ds.labels]]
    np.testing.assert_allclose(kept, direct, atol=1e-4)

    def never(*_: object) -> None:
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(distill, "_teacher_logits", never)
    again = student(runs, out, 0.5, *other, "--overwrite")  # the same student trained again: logits read back
    assert again["teacher"]["reused"] and (out / "teacher" / "logits.safetensors").is_file()


def test_a_changed_teacher_is_refused_on_resume_and_recomputed_otherwise(runs: dict, tmp_path: Path) -> None:
    import shutil

    from intentlab.errors import UserError
    from intentlab.runs.record import read_config
    from intentlab.training import distill

    out = runs["root"] / "kept2"
    student(runs, out, 0.5)
    changed = tmp_path / "teacher"
    shutil.copytree(runs["teacher"], changed)
    cfg = read_config(out).replace(teacher=str(changed))
    from intentlab.data.run_data import run_dataset

    ds, _ = run_dataset(out)
    same = distill.prepare(cfg, ds.train.texts, ds.labels, out, resume=True)  # a copy: the same files
    assert same is not None and same.info.reused
    labels = changed / "model" / "labels.json"
    labels.write_text(labels.read_text() + " ")
    with pytest.raises(UserError, match="changed since this run started"):
        distill.prepare(cfg, ds.train.texts, ds.labels, out, resume=True)
    fresh = distill.prepare(cfg, ds.train.texts, ds.labels, out, resume=False)
    assert fresh is not None and not fresh.info.reused


def test_bad_teachers_are_one_line(
    runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], toy_data: str
) -> None:
    base = [*tiny_args(runs["model"], runs["data"], 1), "--method", "lora"]
    assert main(["train", *base, "--teacher", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")]) == 2
    assert "no such run folder" in one_line(capsys)
    tfidf = tmp_path / "tfidf"
    assert main(["train", "--method", "baseline", "--data", runs["data"], "--out", str(tfidf)]) == 0
    capsys.readouterr()
    assert main(["train", *base, "--teacher", str(tfidf), "--out", str(tmp_path / "b")]) == 2
    assert "a teacher must be an encoder run" in one_line(capsys)
    other = tmp_path / "other.csv"
    write_csv(other, [{**r, "label": r["label"] + "_x"} for r in make_rows(10, seed=4)])
    alien = tmp_path / "alien"
    assert (
        main(["train", *tiny_args(runs["model"], str(other), 1), "--method", "head", "--out", str(alien)])
        == 0
    )
    capsys.readouterr()
    assert main(["train", *base, "--teacher", str(alien), "--out", str(tmp_path / "c")]) == 2
    assert "does not know 4 of this run's intents" in one_line(capsys)
    assert (
        main(
            [
                "train",
                "--method",
                "baseline",
                "--data",
                toy_data,
                "--teacher",
                str(runs["teacher"]),
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "--teacher works with the methods the training loop trains" in one_line(capsys)
    assert (
        main(
            [
                "train",
                *base,
                "--teacher",
                str(runs["teacher"]),
                "--distill-alpha",
                "1.5",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
    assert "distill_alpha must be in [0, 1]" in one_line(capsys)
    assert not any((tmp_path / n).exists() for n in "abcde")  # nothing written for a bad teacher
