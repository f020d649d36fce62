"""Statistics of latency samples and the regression test of the gate (numpy only).

Summaries are distribution-free: latency distributions on a shared machine are skewed and multi-modal (a
descheduled call costs a whole time slice), so nothing here assumes normality.

- The 95 % interval of the median uses order statistics: with ``n`` samples, the median lies between the ``j``-th
  and ``k``-th smallest with probability ``P(j <= B < k)``, ``B ~ Binomial(n, 1/2)``; ``j``, ``k`` are chosen
  symmetric and as tight as possible with coverage of at least 95 %. Exact for any continuous distribution; it
  needs ``n >= 6`` (below that even ``[min, max]`` covers less than 95 %, and the interval is reported as absent).
- The gate compares two runs through **per-round ratios**: in every round of a run each configuration and the
  reference workload are measured back to back, so ``r_j = median(model block j) / median(reference block j)``
  cancels what the machine was doing during round ``j`` (another tenant, a slower host of the same kind). The
  change between runs is ``median(r_new) / median(r_old) - 1``; its 95 % interval comes from a bootstrap that
  resamples whole rounds (samples inside a round are correlated, rounds are the independent units). A one-sided
  Mann-Whitney U test on the two sets of ratios gives the p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Change",
    "Summary",
    "bootstrap_ratio_of_medians",
    "compare_rounds",
    "mann_whitney_greater",
    "median_ci",
    "round_ratios",
    "summarize",
]


@dataclass(frozen=True)
class Summary:
    """Summary of one set of latency samples, in the samples' unit.

    Attributes:
        n: number of samples.
        median, p90, p99, min, mean: the usual figures (percentiles by linear interpolation).
        iqr: p75 - p25.
        ci95: distribution-free 95 % interval of the median, or None with fewer than 6 samples.
    """

    n: int
    median: float
    p90: float
    p99: float
    min: float
    mean: float
    iqr: float
    ci95: tuple[float, float] | None

    @property
    def ci_halfwidth_rel(self) -> float | None:
        """Largest distance from the median to an end of its 95 % interval, relative to the median."""
        if self.ci95 is None or self.median <= 0:
            return None
        return max(self.median - self.ci95[0], self.ci95[1] - self.median) / self.median


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median from order statistics.

    Returns ``(x_(j), x_(n-j+1))`` (1-based order statistics) with the largest ``j`` whose coverage
    ``1 - 2 P(B <= j - 1)`` is at least ``confidence``; None when even ``[min, max]`` does not reach it.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    alpha = 1.0 - confidence
    if n == 0:
        return None
    cdf = _binom_half_cdf(n)
    # Largest j with 2 * P(B <= j-1) <= alpha (cdf is increasing, so count the ranks that qualify).
    j = int(np.searchsorted(cdf[: max(n // 2, 1)], alpha / 2, side="right"))
    if j == 0:
        return None
    return float(x[j - 1]), float(x[n - j])


def _binom_half_cdf(n: int) -> np.ndarray:
    """``cdf[i] = P(B <= i)`` for ``B ~ Binomial(n, 1/2)``, all ``i`` at once (log-space binomial coefficients)."""
    i = np.arange(1, n + 1, dtype=float)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log((n - i + 1) / i))])
    return np.cumsum(np.exp(log_comb + n * math.log(0.5)))


def summarize(samples: Sequence[float] | np.ndarray) -> Summary:
    """Median, p90, p99, min, mean, IQR and the 95 % interval of the median of ``samples``.

    Raises:
        ValueError: ``samples`` is empty.
    """
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    p25, med, p75, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    return Summary(
        n=int(x.size),
        median=float(med),
        p90=float(p90),
        p99=float(p99),
        min=float(x.min()),
        mean=float(x.mean()),
        iqr=float(p75 - p25),
        ci95=median_ci(x),
    )


def round_ratios(rounds: Sequence[Sequence[float]], reference: Sequence[Sequence[float]] | None) -> np.ndarray:
    """Per-round statistic of a configuration: ``median(block) / median(reference block)``.

    With ``reference`` None the per-round medians themselves are returned (no normalisation).

    Raises:
        ValueError: a block is empty or the two runs have different numbers of rounds.
    """
    med = np.array([np.median(b) for b in rounds], dtype=float)
    if any(len(b) == 0 for b in rounds):
        raise ValueError("a round holds no samples")
    if reference is None:
        return med
    if len(reference) != len(rounds):
        raise ValueError(f"{len(rounds)} rounds of samples but {len(reference)} rounds of reference")
    ref = np.array([np.median(b) for b in reference], dtype=float)
    return med / ref


def bootstrap_ratio_of_medians(
    old: np.ndarray, new: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``median(new) / median(old)``, resampling each set independently."""
    rng = np.random.default_rng(seed)
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    mo = np.median(old[rng.integers(0, old.size, (reps, old.size))], axis=1)
    mn = np.median(new[rng.integers(0, new.size, (reps, new.size))], axis=1)
    ratio = mn / mo
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(ratio, [a, 1.0 - a])
    return float(lo), float(hi)


def mann_whitney_greater(old: np.ndarray, new: np.ndarray) -> float:
    """One-sided p-value that ``new`` tends to be larger than ``old`` (Mann-Whitney U, normal approximation with
    tie and continuity correction; adequate from about 8 values per set)."""
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    n1, n2 = new.size, old.size
    both = np.concatenate([new, old])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(both.size, dtype=float)
    sorted_vals = both[order]
    # Average ranks over ties.
    i = 0
    tie_term = 0.0
    while i < both.size:
        j = i
        while j + 1 < both.size and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return 0.5
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class Change:
    """How one configuration changed between two runs.

    Attributes:
        ratio: ``median(new) / median(old)`` of the per-round statistics (1.10 = 10 % slower).
        ci95: bootstrap 95 % interval of ``ratio``.
        p_slower: one-sided Mann-Whitney p-value that the new run is slower.
        rounds: (old, new) numbers of rounds compared.
    """

    ratio: float
    ci95: tuple[float, float]
    p_slower: float
    rounds: tuple[int, int]

    @property
    def percent(self) -> float:
        return 100.0 * (self.ratio - 1.0)


def compare_rounds(
    old: Sequence[Sequence[float]],
    new: Sequence[Sequence[float]],
    old_reference: Sequence[Sequence[float]] | None = None,
    new_reference: Sequence[Sequence[float]] | None = None,
    *,
    reps: int = 2000,
    seed: int = 0,
) -> Change:
    """Compare one configuration's rounds of samples between two runs.

    Pass both references to normalise each round by the reference workload measured in the same round (the
    gate's default), or neither to compare raw per-round medians.

    Raises:
        ValueError: only one reference given, or fewer than 2 rounds on a side.
    """
    if (old_reference is None) != (new_reference is None):
        raise ValueError("give a reference for both runs or for neither")
    a = round_ratios(old, old_reference)
    b = round_ratios(new, new_reference)
    if a.size < 2 or b.size < 2:
        raise ValueError("need at least 2 rounds per run to compare")
    ratio = float(np.median(b) / np.median(a))
    return Change(
        ratio=ratio,
        ci95=bootstrap_ratio_of_medians(a, b, reps=reps, seed=seed),
        p_slower=mann_whitney_greater(a, b),
        rounds=(int(a.size), int(b.size)),
    )


#: Bimodality: each mode holds at least this share of the samples ...
BIMODAL_MIN_SHARE = 0.1
#: ... and the upper mode's median is at least this many times the lower one's ...
BIMODAL_MIN_RATIO = 1.25
#: ... and the gap between the modes' medians is this many times their spread (median absolute deviation).
BIMODAL_MIN_SEPARATION = 6.0


def bimodality(samples: Sequence[float] | np.ndarray) -> dict[str, float] | None:
    """The two modes of ``samples`` when there are two, else ``None``.

    The samples' logarithms are split in two where the between-group variance is largest (Otsu's threshold); the
    split is a second mode when each side holds at least :data:`BIMODAL_MIN_SHARE` of the samples, the upper
    median is :data:`BIMODAL_MIN_RATIO` times the lower one or more, and the gap between the two medians is at
    least :data:`BIMODAL_MIN_SEPARATION` times the larger within-mode median absolute deviation. One process stuck
    in a slow mode (LiteRT int8 at 6.6-7.3 ms with whole stretches at 14-19 ms) meets all three; the long right
    tail of a busy machine does not (it has no second cluster).

    Returns:
        ``{"low_ms", "high_ms", "high_share"}`` (the inputs' units), or ``None``.
    """
    x = np.sort(np.log(np.asarray(samples, dtype=float)))
    n = x.size
    if n < 20 or not np.isfinite(x).all():
        return None
    k = np.arange(1, n)
    left_sum = np.cumsum(x)[:-1]
    left_mean = left_sum / k
    right_mean = (x.sum() - left_sum) / (n - k)
    between = k * (n - k) * (left_mean - right_mean) ** 2
    lo = max(1, int(np.ceil(BIMODAL_MIN_SHARE * n)))
    hi = n - lo
    if hi <= lo:
        return None
    cut = lo + int(np.argmax(between[lo - 1 : hi]))  # first index of the upper group
    low, high = x[:cut], x[cut:]
    m_low, m_high = float(np.median(low)), float(np.median(high))
    spread = max(float(np.median(np.abs(low - m_low))), float(np.median(np.abs(high - m_high))), 1e-9)
    if m_high - m_low < np.log(BIMODAL_MIN_RATIO) or (m_high - m_low) / spread < BIMODAL_MIN_SEPARATION:
        return None
    return {"low_ms": float(np.exp(m_low)), "high_ms": float(np.exp(m_high)), "high_share": float(high.size / n)}


#: Processes disagree when their medians' 95 % intervals do not overlap and the medians differ by more than this
#: (a process's own bias, from where its memory lands, is 1-3 % here: docs/benchmarking.md).
PROCESS_DISAGREEMENT = 0.05


def process_disagreement(per_process: Sequence[Sequence[float]]) -> dict[str, Any] | None:
    """When the processes that measured one configuration disagree beyond their intervals, their medians and
    intervals; else ``None``. See :data:`PROCESS_DISAGREEMENT`."""
    summaries = [summarize(s) for s in per_process if len(s) >= 6]
    if len(summaries) < 2:
        return None
    fast = min(summaries, key=lambda s: s.median)
    slow = max(summaries, key=lambda s: s.median)
    if fast.ci95 is None or slow.ci95 is None:
        return None
    if slow.ci95[0] > fast.ci95[1] and slow.median > (1 + PROCESS_DISAGREEMENT) * fast.median:
        return {
            "medians": [s.median for s in summaries],
            "ci95": [list(s.ci95) if s.ci95 else None for s in summaries],
            "ratio": slow.median / fast.median,
        }
    return None
