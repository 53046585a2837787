"""Findings: sentences generated from the summary numbers and paired tests — never written by hand.

Each sentence states what the numbers say, including when they say the opposite of folklore
(e.g. LoRA slower per epoch than full fine-tuning, or a difference that is within noise).
"""

from __future__ import annotations

from typing import Any

from intentlab import methods as M
from intentlab.reporting.stats import PairedResult
from intentlab.reporting.summary import representatives, variant_pairs


def pretty(name: str) -> str:
    """How a sentence names a method, or a plan variant by its own name."""
    return M.prose(name)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _verdict(t: PairedResult | None) -> str:
    if t is None:
        return ""
    ci = f"95% CI {t.low * 100:+.2f} to {t.high * 100:+.2f} points, McNemar p={t.p_mcnemar:.2g}"
    if t.p_seeds is not None:
        ci += f", across seeds p={t.p_seeds:.2g}"
    return f" — a real difference ({ci})" if t.significant else f" — within noise ({ci})"


def _times(a: float, b: float, faster: str = "faster", slower: str = "slower") -> str:
    """'1.4× faster' if a takes less time than b, else '1.2× slower'."""
    return f"{b / a:.1f}× {faster}" if a <= b else f"{a / b:.1f}× {slower}"


def versus(a: dict[str, Any], b: dict[str, Any], test: PairedResult | None) -> str:
    """A against B on accuracy, parameters, checkpoint size and time per epoch."""
    acc_a, acc_b = a["test_accuracy"][0], b["test_accuracy"][0]
    share = a["trainable_params"] / b["trainable_params"]
    params = (
        f"{100 * share:.2g}% of its parameters" if share < 0.95 else f"{share:.2f}× its trainable parameters"
    )
    if abs(acc_a - acc_b) < 5e-5:
        head = f"{_cap(pretty(a['name']))} matched {pretty(b['name'])}'s test accuracy ({100 * acc_a:.2f}%)"
    elif acc_a > acc_b:
        head = f"{_cap(pretty(a['name']))} beat {pretty(b['name'])}'s test accuracy by {100 * (acc_a - acc_b):.2f} points ({100 * acc_a:.2f}% vs {100 * acc_b:.2f}%)"
    else:
        head = f"{_cap(pretty(a['name']))} reached {100 * acc_a / acc_b:.1f}% of {pretty(b['name'])}'s test accuracy ({100 * acc_a:.2f}% vs {100 * acc_b:.2f}%)"
    parts = [f"{head} while training {params}"]
    ck_a, ck_b = a["checkpoint_bytes"][0], b["checkpoint_bytes"][0]
    if ck_a and ck_b:
        parts.append(f"its checkpoint is {_times(ck_a, ck_b, 'smaller', 'larger')}")
    ep_a, ep_b = a["epoch_seconds"][0], b["epoch_seconds"][0]
    if ep_a and ep_b:
        parts.append(f"per epoch it was {_times(ep_a, ep_b)}")
    mem_a, mem_b = a["peak_memory_mb"][0], b["peak_memory_mb"][0]
    if mem_a and mem_b:
        parts.append(f"its peak memory was {mem_a:,.0f} MB against {mem_b:,.0f} MB")
    return "; ".join(parts) + _verdict(test) + "."


def findings(summary: list[dict[str, Any]], tests: dict[tuple[str, str], PairedResult]) -> list[str]:
    """The report's findings, most important first."""
    rows = {r["name"]: r for r in summary}
    methods = {r["name"]: r["method"] for r in summary}
    by_method = {m: rows[n] for m, n in representatives(methods).items()}
    floor_method = M.floor_of(by_method)
    out = []
    best = max(summary, key=lambda r: r["test_accuracy"][0])
    out.append(
        f"The most accurate method was {pretty(best['name'])}: {100 * best['test_accuracy'][0]:.2f}% test accuracy, "
        f"macro-F1 {100 * best['test_f1_macro'][0]:.2f}% (mean of {best['n']} seed{'s' if best['n'] > 1 else ''})."
    )
    for ma, mb in M.pairs(by_method):
        if mb != floor_method:
            a, b = by_method[ma], by_method[mb]
            out.append(versus(a, b, tests.get((a["name"], b["name"]))))
    for va, vb in variant_pairs(methods):
        out.append(versus(rows[va], rows[vb], tests.get((va, vb))))
    base = by_method.get(floor_method) if floor_method else None
    if base:
        floor = base["test_accuracy"][0]
        for r in summary:
            if r is base:
                continue
            d = 100 * (r["test_accuracy"][0] - floor)
            t = tests.get((r["name"], base["name"]))
            if d > 0:
                out.append(
                    f"{_cap(pretty(r['name']))} beat the TF-IDF baseline ({100 * floor:.2f}%) by {d:.2f} points{_verdict(t)}."
                )
            else:
                out.append(
                    f"{_cap(pretty(r['name']))} did not beat the TF-IDF baseline: {100 * r['test_accuracy'][0]:.2f}% "
                    f"against {100 * floor:.2f}% ({d:+.2f} points){_verdict(t)}; on this data it is not worth its compute."
                )
    timed = [
        r
        for r in summary
        if r["method"] in M.METHODS
        and M.get(r["method"]).encoder
        and r["epoch_seconds"][0] == r["epoch_seconds"][0]
    ]
    fast = min(timed, key=lambda r: r["epoch_seconds"][0], default=None)
    slow = max(timed, key=lambda r: r["epoch_seconds"][0], default=None)
    if fast and slow and slow["epoch_seconds"][0] > 1.05 * fast["epoch_seconds"][0]:
        out.append(
            f"Per epoch, {pretty(fast['name'])} was the fastest neural method ({fast['epoch_seconds'][0]:.0f} s) and "
            f"{pretty(slow['name'])} the slowest ({slow['epoch_seconds'][0]:.0f} s)."
        )
    noisy = [r for r in summary if r["n"] > 1]
    if noisy:
        widest = max(noisy, key=lambda r: r["test_accuracy"][1])
        out.append(
            f"Seed noise: test accuracy varied by up to {100 * widest['test_accuracy'][1]:.2f} points (std) across "
            f"seeds ({pretty(widest['name'])}); single-seed comparisons closer than that are not evidence."
        )
    return out


def ood_findings(analysis: dict[str, Any]) -> list[str]:
    """Sentences about out-of-scope detection: the best detector, what its threshold catches and
    costs, distance against confidence scorers, and whether the differences between methods are real."""
    if not analysis:
        return []
    rows = analysis["rows"]
    chosen = [r for r in rows if r["chosen"]]
    groups = sorted({k.split(":")[0] for r in rows for k in r if k.endswith(":auroc")})

    def auroc(r: dict[str, Any]) -> float:
        values = [r[f"{g}:auroc"][0] for g in groups] if groups else [r["auroc"][0]]
        return float(sum(values) / len(values))

    def per_group(r: dict[str, Any], key: str, scale: float = 1.0, digits: int = 3) -> str:
        if not groups:
            return f"{scale * r[key.split(':')[-1]][0]:.{digits}f}"
        return ", ".join(f"{scale * r[f'{g}:{key}'][0]:.{digits}f} against {g}" for g in groups)

    out = []
    best = max(chosen, key=auroc)
    out.append(
        f"The best out-of-scope detector was {pretty(best['name'])} with its {best['scorer']} scorer: AUROC "
        f"{per_group(best, 'auroc')} (mean of {best['n']} seed{'s' if best['n'] > 1 else ''})."
    )
    for r in sorted(chosen, key=auroc, reverse=True):
        out.append(
            f"At its validation-picked threshold, {pretty(r['name'])} ({r['scorer']}) kept "
            f"{100 * r['inscope_accuracy_with_rejection'][0]:.1f}% in-scope accuracy (closed-set "
            f"{100 * r['inscope_accuracy_closed'][0]:.1f}%) and caught "
            + (
                " and ".join(f"{100 * r[f'{g}:recall'][0]:.1f}% of {g}" for g in groups)
                if groups
                else f"{100 * r['oos_recall'][0]:.1f}% of the out-of-scope"
            )
            + " texts."
        )
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = {r["scorer"]: r for r in rows if r["name"] == name}
        dist = [mine[s] for s in ("mahalanobis", "knn") if s in mine]
        if dist and "msp" in mine:
            top = max(dist, key=auroc)
            verb = "beat" if auroc(top) > auroc(mine["msp"]) else "did not beat"
            out.append(
                f"For {pretty(name)}, the distance scorer {top['scorer']} {verb} softmax confidence: mean AUROC "
                f"{auroc(top):.3f} against {auroc(mine['msp']):.3f}."
            )
    for (a, b), t in analysis["tests"].items():
        ra = next(r for r in chosen if r["name"] == a)
        rb = next(r for r in chosen if r["name"] == b)
        out.append(
            f"On out-of-scope detection {pretty(a)} against {pretty(b)}: mean AUROC {auroc(ra):.3f} vs "
            f"{auroc(rb):.3f}; texts handled right{_verdict(t)}."
        )
    return out
