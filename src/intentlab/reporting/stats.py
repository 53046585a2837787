"""Paired statistics on test predictions: is a difference between two methods real or noise?

Both methods are scored on the same test examples, so the comparison is paired:

- `paired_bootstrap`: resample test examples (with replacement) and recompute the accuracy difference;
  the 95% interval says how much the difference could move with another test set of the same kind.
  With several seeds per method, each example's correctness is averaged over seeds first.
- `mcnemar`: exact McNemar test on the discordant pairs of one run of each method (the first seed).
- `seed_test`: Welch's t-test on the per-seed test accuracies, when both methods have two or more seeds.
  The two tests above only see test-set sampling noise; this one sees training noise (seed to seed).

A difference is called real only when every available test agrees: the bootstrap interval excludes zero,
McNemar's p < 0.05 and, with several seeds on both sides, Welch's p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass
class PairedResult:
    diff: float  # mean accuracy of A minus B
    low: float  # 95% bootstrap interval
    high: float
    p_mcnemar: float  # exact two-sided p-value (first seed of each)
    a_only: int  # test examples only A gets right (first seed)
    b_only: int
    p_seeds: float | None = None  # Welch's t-test over per-seed accuracies; None with fewer than 2 seeds

    @property
    def significant(self) -> bool:
        excludes_zero = self.low > 0 or self.high < 0
        seeds_agree = self.p_seeds is None or self.p_seeds < ALPHA
        return excludes_zero and self.p_mcnemar < ALPHA and seeds_agree


def correctness(y_true: list[int], preds: list[list[int]]) -> np.ndarray:
    """Per-example share of seeds that predicted correctly (0..1)."""
    y = np.asarray(y_true)
    return np.mean([np.asarray(p) == y for p in preds], axis=0)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean difference of per-example correctness a - b with a 95% percentile interval."""
    rng = np.random.default_rng(seed)
    d = a.astype(np.float64) - b.astype(np.float64)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[float, int, int]:
    """Exact two-sided McNemar p-value, and the two discordant counts."""
    from scipy.stats import binomtest

    a_only = int(np.sum(a_correct & ~b_correct))
    b_only = int(np.sum(~a_correct & b_correct))
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)
    return p, a_only, b_only


def seed_test(acc_a: list[float], acc_b: list[float]) -> float | None:
    """Two-sided Welch's t-test p-value on per-seed accuracies; None unless both sides have >= 2 seeds."""
    if len(acc_a) < 2 or len(acc_b) < 2:
        return None
    from scipy.stats import ttest_ind

    if np.std(acc_a) == 0 and np.std(acc_b) == 0:
        return 1.0 if np.mean(acc_a) == np.mean(acc_b) else 0.0
    return float(ttest_ind(acc_a, acc_b, equal_var=False).pvalue)


def compare_predictions(
    y_true: list[int], preds_a: list[list[int]], preds_b: list[list[int]]
) -> PairedResult:
    """Paired comparison of method A (one prediction list per seed) against method B."""
    diff, low, high = paired_bootstrap(correctness(y_true, preds_a), correctness(y_true, preds_b))
    y = np.asarray(y_true)
    p, a_only, b_only = mcnemar(np.asarray(preds_a[0]) == y, np.asarray(preds_b[0]) == y)
    per_seed = [[float(np.mean(np.asarray(p) == y)) for p in preds] for preds in (preds_a, preds_b)]
    return PairedResult(diff, low, high, p, a_only, b_only, seed_test(*per_seed))
