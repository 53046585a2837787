"""The paired statistics behind the report's verdicts: a difference is real only when every test agrees."""

from __future__ import annotations

import numpy as np

from intentlab.reporting.stats import compare_predictions, seed_test


def preds_with_accuracy(n: int, accuracy: float, rng: np.random.Generator) -> list[int]:
    """Predictions for `n` examples of class 0, wrong (class 1) on a random `1 - accuracy` share."""
    wrong = rng.permutation(n)[: round(n * (1 - accuracy))]
    p = np.zeros(n, dtype=int)
    p[wrong] = 1
    return p.tolist()


def test_consistent_gap_over_seeds_is_real() -> None:
    rng = np.random.default_rng(0)
    y = [0] * 2000
    a = [preds_with_accuracy(2000, acc, rng) for acc in (0.95, 0.951, 0.949)]
    b = [preds_with_accuracy(2000, acc, rng) for acc in (0.90, 0.899, 0.901)]
    t = compare_predictions(y, a, b)
    assert abs(t.diff - 0.05) < 1e-3
    assert t.low > 0 and t.p_mcnemar < 0.05 and t.p_seeds is not None and t.p_seeds < 0.05
    assert t.significant


def test_seed_noise_overrules_a_lucky_first_seed() -> None:
    """Test-set tests alone would call this real; the spread across seeds says it is noise."""
    rng = np.random.default_rng(1)
    y = [0] * 2000
    a = [preds_with_accuracy(2000, acc, rng) for acc in (0.99, 0.75, 0.97)]
    b = [preds_with_accuracy(2000, acc, rng) for acc in (0.85, 0.86, 0.85)]
    t = compare_predictions(y, a, b)
    assert t.low > 0 and t.p_mcnemar < 0.05  # both test-set tests are fooled
    assert t.p_seeds is not None and t.p_seeds > 0.3
    assert not t.significant


def test_single_seed_has_no_seed_test() -> None:
    assert seed_test([0.9], [0.8, 0.85]) is None
    assert seed_test([0.9, 0.9], [0.9, 0.9]) == 1.0
    assert seed_test([0.9, 0.9], [0.8, 0.8]) == 0.0
    rng = np.random.default_rng(2)
    y = [0] * 500
    t = compare_predictions(y, [preds_with_accuracy(500, 0.9, rng)], [preds_with_accuracy(500, 0.9, rng)])
    assert t.p_seeds is None and not t.significant
