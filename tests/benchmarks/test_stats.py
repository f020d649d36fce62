"""Statistics against hand-computed values and known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.stats import (
    bootstrap_ratio_of_medians,
    compare_rounds,
    mann_whitney_greater,
    median_ci,
    round_ratios,
    summarize,
)


@pytest.mark.parametrize(
    ("n", "ranks"),
    # Classic order-statistic intervals of the median at >= 95 % (1-based ranks j, n-j+1).
    [(6, (1, 6)), (8, (1, 8)), (10, (2, 9)), (20, (6, 15)), (50, (18, 33)), (100, (40, 61))],
)
def test_median_ci_ranks(n: int, ranks: tuple[int, int]) -> None:
    x = np.arange(1, n + 1, dtype=float)[::-1]  # unsorted input
    assert median_ci(x) == (float(ranks[0]), float(ranks[1]))


def test_median_ci_too_few_samples() -> None:
    # With 5 samples even [min, max] covers only 1 - 2/32 = 93.75 %.
    assert median_ci([1, 2, 3, 4, 5]) is None
    assert median_ci([]) is None


def test_median_ci_coverage_on_skewed_distribution() -> None:
    rng = np.random.default_rng(0)
    true_median = np.log(2)  # of Exp(1)
    hits = 0
    trials = 2000
    for _ in range(trials):
        lo, hi = median_ci(rng.exponential(size=25))
        hits += lo <= true_median <= hi
    # Exact coverage for n=25 is 1 - 2 P(B <= 7) = 0.9567; allow binomial noise of 2000 trials.
    assert 0.94 <= hits / trials <= 0.975


def test_summarize_hand_computed() -> None:
    s = summarize(np.arange(1, 101, dtype=float))
    assert s.n == 100
    assert s.median == pytest.approx(50.5)
    assert s.p90 == pytest.approx(90.1)
    assert s.p99 == pytest.approx(99.01)
    assert s.min == 1.0
    assert s.iqr == pytest.approx(75.25 - 25.75)
    assert s.ci95 == (40.0, 61.0)
    assert s.ci_halfwidth_rel == pytest.approx(10.5 / 50.5)
    with pytest.raises(ValueError):
        summarize([])


def test_mann_whitney_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.3, 1.0):
        a = rng.normal(size=30)
        b = rng.normal(size=25) + shift
        ours = mann_whitney_greater(a, b)
        ref = scipy_stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic", use_continuity=True).pvalue
        assert ours == pytest.approx(ref, rel=1e-6)
    ties_a, ties_b = np.array([1, 1, 2, 2, 3, 3, 3, 4]), np.array([2, 3, 3, 4, 4, 5, 5, 5])
    ref = scipy_stats.mannwhitneyu(ties_b, ties_a, alternative="greater", method="asymptotic").pvalue
    assert mann_whitney_greater(ties_a, ties_b) == pytest.approx(ref, rel=1e-6)


def test_bootstrap_ratio_of_medians_brackets_the_true_ratio() -> None:
    rng = np.random.default_rng(2)
    old = rng.lognormal(0, 0.05, 40)
    lo, hi = bootstrap_ratio_of_medians(old, old * 1.2)
    assert lo <= 1.2 <= hi
    assert hi - lo < 0.1


def test_reference_normalisation_cancels_a_slower_machine() -> None:
    rng = np.random.default_rng(3)
    speed = rng.uniform(1.0, 1.6, size=20)  # per-round machine slowness, shared by model and reference
    model = [list(10 * s * rng.lognormal(0, 0.01, 5)) for s in speed]
    ref = [list(8 * s * rng.lognormal(0, 0.01, 5)) for s in speed]
    slow_model = [[t * 1.5 for t in b] for b in model]  # the same code on a 1.5x slower machine...
    slow_ref = [[t * 1.5 for t in b] for b in ref]
    normalised = compare_rounds(model, slow_model, ref, slow_ref)
    raw = compare_rounds(model, slow_model)
    assert normalised.ratio == pytest.approx(1.0, abs=1e-9)
    assert raw.ratio == pytest.approx(1.5, rel=1e-9)
    assert np.allclose(
        round_ratios(model, ref), [np.median(m) / np.median(r) for m, r in zip(model, ref, strict=False)]
    )
    with pytest.raises(ValueError):
        compare_rounds(model, slow_model, ref, None)
    with pytest.raises(ValueError):
        round_ratios(model, ref[:-1])


def test_bimodal_samples_and_disagreeing_processes_are_flagged() -> None:
    from benchmarks.rounds import flag_row
    from benchmarks.schema import Row
    from benchmarks.stats import bimodality, process_disagreement

    rng = np.random.default_rng(0)
    # LiteRT int8 as measured: 6.6-7.3 ms, with whole stretches at 14-19 ms in one process.
    fast, slow = rng.uniform(6.6e-3, 7.3e-3, 200), rng.uniform(14e-3, 19e-3, 120)
    modes = bimodality(np.concatenate([fast, slow]) * 1e3)
    assert modes is not None and 6.6 < modes["low_ms"] < 7.3 and 14 < modes["high_ms"] < 19
    assert abs(modes["high_share"] - 120 / 320) < 1e-9
    row = Row("hsnet", "tflite", "int8", 1, 1, 224)
    flag_row(row, [list(fast), list(slow)])
    assert [f.split(":")[0] for f in row.flags] == ["bimodal", "processes disagree"] and row.noisy
    assert row.process_medians_ms is not None and row.process_medians_ms[1] > 2 * row.process_medians_ms[0]
    # A unimodal row with a busy machine's long right tail, and two processes 1 % apart, are not flagged.
    tail = np.concatenate([rng.lognormal(np.log(7e-3), 0.03, 380), rng.lognormal(np.log(7e-3), 0.5, 20)])
    assert bimodality(tail) is None and bimodality(rng.lognormal(0, 0.3, 400)) is None
    assert process_disagreement([rng.lognormal(0, 0.03, 60), rng.lognormal(0.01, 0.03, 60)]) is None
    quiet = Row("hsnet", "tflite", "fp32", 1, 1, 224)
    flag_row(quiet, [list(tail[:200]), list(tail[200:])])
    assert quiet.flags == []


def test_no_flag_on_the_committed_baselines_real_samples() -> None:
    import json
    from pathlib import Path

    from benchmarks.stats import bimodality

    for path in (Path(__file__).resolve().parents[2] / "benchmarks" / "baselines").rglob("*.json"):
        for row in json.loads(path.read_text())["rows"]:
            for key in ("samples_ms", "cpu_samples_ms"):
                samples = [t for block in row[key] for t in block]
                assert bimodality(samples) is None, (path.name, row["runtime"], key)
