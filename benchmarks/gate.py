"""The regression gate: compare a run with a baseline, row by row, and decide.

Per row (matched on model, runtime, precision, threads, batch and input size):

- **Latency**: the per-round ratios of the row to the reference workload measured in the same round
  (:func:`benchmarks.stats.compare_rounds`) give the change, its bootstrap 95 % interval and a one-sided
  Mann-Whitney p-value. The row **regresses** when the change is significant (``p < alpha``) **and** its point
  estimate exceeds the threshold. docs/benchmarking.md gives the A/A and injected-slowdown numbers behind this
  rule (and behind the choice of metric: process CPU time by default, wall time on request).
- **Size**: the artifact grew by more than the threshold (sizes are exact: no statistics needed).
- **Parity**: the artifact's max relative error against PyTorch grew more than tenfold and beyond 1e-5, or its
  top-1 agreement or int8 accuracy drop got worse by more than a point.
- **Status**: a row that was ``ok`` and now ``failed``.

A row measured only in the new run is ``new``; one only in the baseline is ``missing``; neither fails the gate.

**Another machine model**: the same-round reference workload cancels a uniformly slower or faster machine, not a
different microarchitecture (on an AMD EPYC, a baseline recorded on an Intel Xeon read TFLite -34.5 % on unchanged
code). When the baseline's CPU model or vector ISA flags differ from the new run's, every latency verdict is
``inconclusive`` (the report says why and :attr:`GateReport.inconclusive` holds the reason); size, parity and
status still decide. Gate base against head in one run instead, or record a baseline on that CPU model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.errors import BaselineError
from benchmarks.schema import BenchResult, Row
from benchmarks.stats import Change, compare_rounds

__all__ = [
    "DEFAULT_ALPHA",
    "METRICS",
    "MIN_GATE_ROUNDS",
    "GateReport",
    "RowVerdict",
    "compare_results",
    "machine_mismatch",
    "select_baseline",
    "is_regression",
    "parse_threshold",
]

#: Significance level of the one-sided test.
DEFAULT_ALPHA = 0.01
#: Fewest rounds per run for which the one-sided test can reach p < 0.01 (8 vs 8 values: p >= 0.0004).
MIN_GATE_ROUNDS = 8
#: Gate metrics: per-call process CPU time (immune to time-slicing by other tenants), wall-clock time, or the
#: deterministic instruction count of ``--metric instructions`` results (compared with the threshold only).
METRICS = ("cpu", "wall", "instructions")


def parse_threshold(text: str | float) -> float:
    """``"5%"``, ``"5"`` or ``0.05`` -> 0.05.

    Raises:
        BaselineError: not a number, or outside 0..1000 %.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = text.strip()
        pct = s.endswith("%")
        try:
            value = float(s.rstrip("%").strip())
        except ValueError:
            raise BaselineError(f"threshold {text!r} is not a percentage (e.g. 5%)") from None
        if pct or value >= 1:
            value /= 100
    if not 0 < value <= 10:
        raise BaselineError(f"threshold {text!r} must be above 0 % and at most 1000 %")
    return value


def is_regression(change: Change, threshold: float, alpha: float = DEFAULT_ALPHA) -> bool:
    """The gate's rule: significantly slower (one-sided p < alpha) and by more than ``threshold``."""
    return change.p_slower < alpha and change.ratio - 1.0 > threshold


def is_improvement(change: Change, threshold: float, alpha: float = DEFAULT_ALPHA) -> bool:
    """The mirror rule, reported as ``faster`` (never fails the gate)."""
    return (1.0 - change.p_slower) < alpha and 1.0 - change.ratio > threshold


@dataclass
class RowVerdict:
    """The gate's decision for one row.

    Attributes:
        label: the row's configuration, for people.
        key: the row's key (see :attr:`Row.key`).
        verdict: ``pass``, ``regression``, ``faster``, ``failed`` (ok in the baseline, failed now), ``skipped``,
            ``n/a`` (not ok in the baseline either), ``new`` or ``missing``.
        change: latency change (None when a side has no samples).
        size_change: relative artifact size change (None when unknown).
        reasons: why it regressed (one short phrase each).
    """

    label: str
    key: tuple[Any, ...]
    verdict: str
    change: Change | None = None
    size_change: float | None = None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        c = self.change
        return {
            "label": self.label,
            "key": list(self.key),
            "verdict": self.verdict,
            "change_percent": None if c is None else round(c.percent, 3),
            "ci95_percent": None if c is None else [round(100 * (v - 1), 3) for v in c.ci95],
            "p_slower": None if c is None else c.p_slower,
            "rounds": None if c is None else list(c.rounds),
            "size_change_percent": None if self.size_change is None else round(100 * self.size_change, 3),
            "reasons": self.reasons,
        }


@dataclass
class GateReport:
    """All verdicts of one comparison and how it was made."""

    rows: list[RowVerdict]
    threshold: float
    metric: str
    alpha: float
    normalised: bool
    inconclusive: str | None = None

    @property
    def passed(self) -> bool:
        return not any(r.verdict in ("regression", "failed") for r in self.rows)

    @property
    def outcome(self) -> str:
        """``fail`` (a regression or failure), ``inconclusive`` (the data cannot decide) or ``pass``."""
        if not self.passed:
            return "fail"
        return "inconclusive" if any(r.verdict == "inconclusive" for r in self.rows) else "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "outcome": self.outcome,
            "inconclusive": self.inconclusive,
            "threshold": self.threshold,
            "metric": self.metric,
            "alpha": self.alpha,
            "normalised_by_reference": self.normalised,
            "rows": [r.to_dict() for r in self.rows],
        }


def _rounds(result: BenchResult, row: Row, metric: str) -> tuple[list[list[float]], list[list[float]] | None]:
    samples = row.cpu_samples_ms if metric == "cpu" else row.samples_ms
    ref = result.reference.get(row.reference_key) or {}
    ref_samples = ref.get("cpu_samples_ms" if metric == "cpu" else "samples_ms")
    return samples, ref_samples


def check_compatible(old: BenchResult, new: BenchResult) -> None:
    """Refuse comparisons that mean nothing, with one line saying why.

    Raises:
        BaselineError: no row of the new run matches a baseline row (and the sizes, batches or thread counts
            differ, which is named), or a side lacks the same-run reference the normalisation needs.
    """
    old_keys = {r.key for r in old.rows}
    new_keys = {r.key for r in new.rows}
    if old_keys & new_keys:
        return
    for name, index in (("input size", 5), ("batch", 4), ("threads", 3)):
        a = sorted({k[index] for k in old_keys})
        b = sorted({k[index] for k in new_keys})
        if a != b:
            raise BaselineError(
                f"incompatible baseline: it was measured at {name} {', '.join(map(str, a))}, this run at "
                f"{', '.join(map(str, b))}; re-record the baseline with the same settings"
            )
    raise BaselineError("incompatible baseline: no configuration of this run appears in it")


def compare_results(
    old: BenchResult,
    new: BenchResult,
    *,
    threshold: float = 0.05,
    metric: str = "cpu",
    alpha: float = DEFAULT_ALPHA,
    normalise: bool = True,
) -> GateReport:
    """Compare ``new`` with the baseline ``old``; see the module docstring for the rules.

    Raises:
        BaselineError: incompatible results (see :func:`check_compatible`), an unknown metric, or a result
            without the reference samples that ``normalise`` needs.
    """
    if metric not in METRICS:
        raise BaselineError(f"unknown gate metric {metric!r}; valid: {', '.join(METRICS)}")
    check_compatible(old, new)
    old_rows = {r.key: r for r in old.rows}
    verdicts: list[RowVerdict] = []
    seen = set()
    for row in new.rows:
        seen.add(row.key)
        base = old_rows.get(row.key)
        if base is None:
            verdicts.append(RowVerdict(row.label, row.key, "new" if row.ok else _status_word(row)))
            continue
        verdict = _compare_row(old, new, base, row, threshold, metric, alpha, normalise)
        _undecided_if_noisy(verdict, base, row, threshold, metric)
        verdicts.append(verdict)
    for key, base in old_rows.items():
        if key not in seen:
            verdicts.append(RowVerdict(base.label, key, "missing"))
    # Counts on an emulated device do not depend on the host (the emulated core decides the code path).
    emulated = metric == "instructions" and bool(new.rows) and all(r.emulated or not r.ok for r in new.rows)
    hosts = machine_mismatch(old.environment, new.environment)
    why = None if emulated else hosts
    if emulated and hosts is not None:
        new_rows = {r.key: r for r in new.rows}
        for v in verdicts:
            _built_elsewhere(v, old_rows.get(v.key), new_rows.get(v.key), hosts)
    if why is not None:
        for v in verdicts:
            if v.change is not None and v.verdict in ("pass", "faster", "regression") and _latency_only(v, metric):
                v.verdict = "inconclusive"
    return GateReport(verdicts, threshold, metric, alpha, normalise, inconclusive=why)


def _built_elsewhere(v: RowVerdict, base: Row | None, row: Row | None, hosts: str) -> None:
    """An emulated count that moved because the artifact was built otherwise on another host (the ONNX int8
    filling is decided by a bit-identity check on the host's CPU) is no verdict on the commit: inconclusive."""
    if base is None or row is None or v.verdict not in ("regression", "faster"):
        return
    if base.artifact_sha256 and row.artifact_sha256 and base.artifact_sha256 != row.artifact_sha256:
        v.verdict = "inconclusive"
        v.reasons.append(f"the artifact was built differently here ({hosts})")


def _latency_only(v: RowVerdict, metric: str) -> bool:
    """True when nothing but the latency change (if anything) speaks in ``v``'s reasons."""
    return all(r.startswith(f"{metric} time") for r in v.reasons)


def _undecided_if_noisy(v: RowVerdict, base: Row, row: Row, threshold: float, metric: str) -> None:
    """A latency verdict becomes ``inconclusive`` when a side is noisy (:attr:`Row.noisy`) and the change's 95 %
    interval holds the threshold: those samples cannot tell a regression from no change."""
    c = v.change
    if (
        c is None
        or v.verdict not in ("pass", "regression")
        or not (base.noisy or row.noisy)
        or metric == "instructions"
    ):
        return
    if not _latency_only(v, metric):
        return  # size, parity or status decided
    if c.ci95[0] < 1 + threshold < c.ci95[1]:
        v.verdict = "inconclusive"
        widths = "/".join(
            f"±{100 * r.latency.ci_halfwidth_rel:.0f} %"
            for r in (base, row)
            if r.latency and r.latency.ci_halfwidth_rel
        )
        v.reasons.append(f"noisy ({widths}): the change's interval holds the threshold")


def select_baseline(path: Path, remote: list[str] | None = None) -> Path:
    """``path`` itself, or for a folder the ``*.json`` result in it recorded on this machine's CPU model and ISA
    flags (the newest of several); a folder without one gives its newest result, which the gate then calls
    inconclusive. For a run on devices (``remote``), the result recorded on the same devices instead.

    Raises:
        BaselineError: no such file or folder, or a folder without results.
    """
    import json

    from hsnet.toolbox.machine import cpu_flags, cpu_model

    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise BaselineError(f"baseline {path}: no such file or folder")
    here = {"cpu": cpu_model(), "cpu_flags": cpu_flags()}
    found: list[tuple[bool, str, Path]] = []
    for f in sorted(path.glob("*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        if remote is not None:
            same = ((data.get("settings") or {}).get("request") or {}).get("remote") == remote
            found.append((same, str(data.get("created", "")), f))
            continue
        env = data.get("environment") or {}
        found.append((machine_mismatch(env, here) is None, str(data.get("created", "")), f))
    if not found:
        raise BaselineError(f"baseline folder {path} holds no result files (*.json)")
    return max(found)[2]


def machine_mismatch(old_env: dict[str, Any], new_env: dict[str, Any]) -> str | None:
    """Why two results' latencies cannot be compared (another CPU model or ISA), or ``None`` when they can."""
    a, b = old_env.get("cpu"), new_env.get("cpu")
    if a and b and a != b:
        return f"the baseline was measured on {a}, this run on {b}"
    fa, fb = set(old_env.get("cpu_flags") or ()), set(new_env.get("cpu_flags") or ())
    if fa and fb and fa != fb:
        diff = sorted(fa ^ fb)
        return f"the baseline's CPU has other vector ISA flags ({', '.join(diff[:6])} differ)"
    return None


def _status_word(row: Row) -> str:
    return row.status.split(":", 1)[0]


def _compare_row(
    old: BenchResult,
    new: BenchResult,
    base: Row,
    row: Row,
    threshold: float,
    metric: str,
    alpha: float,
    normalise: bool,
) -> RowVerdict:
    v = RowVerdict(row.label, row.key, "pass")
    if not row.ok:
        if base.ok and row.status.startswith("failed"):
            v.verdict = "failed"  # worked in the baseline, broken now: that fails the gate
        else:
            v.verdict = _status_word(row) if base.ok else "n/a"  # skipped now, or not ok in the baseline either
        v.reasons.append(row.status)
        return v
    if not base.ok:
        v.verdict = "new"
        return v
    if metric == "instructions":
        return _compare_instructions(base, row, threshold, v)
    old_s, old_ref = _rounds(old, base, metric)
    new_s, new_ref = _rounds(new, row, metric)
    if normalise and (not old_ref or not new_ref):
        side = "baseline" if not old_ref else "new run"
        raise BaselineError(f"the {side} has no reference workload samples to normalise by; re-record it")
    if old_s and new_s:
        if min(len(old_s), len(new_s)) < MIN_GATE_ROUNDS:
            raise BaselineError(
                f"{row.label}: {min(len(old_s), len(new_s))} rounds in a run; the gate's test needs at least "
                f"{MIN_GATE_ROUNDS} per run (--rounds)"
            )
        try:
            v.change = compare_rounds(old_s, new_s, old_ref if normalise else None, new_ref if normalise else None)
        except ValueError as e:
            raise BaselineError(f"{row.label}: cannot compare ({e})") from None
        if is_regression(v.change, threshold, alpha):
            v.reasons.append(f"{metric} time +{v.change.percent:.1f} % (p={v.change.p_slower:.2g})")
        elif is_improvement(v.change, threshold, alpha):
            v.verdict = "faster"
    if base.artifact_bytes and row.artifact_bytes:
        v.size_change = row.artifact_bytes / base.artifact_bytes - 1
        if v.size_change > threshold:
            v.reasons.append(f"artifact +{100 * v.size_change:.1f} %")
    v.reasons += _parity_reasons(base.parity or {}, row.parity or {})
    if v.reasons:
        v.verdict = "regression"
    return v


def _compare_instructions(base: Row, row: Row, threshold: float, v: RowVerdict) -> RowVerdict:
    """Counts are deterministic, so the threshold alone decides (no test, no interval)."""
    if base.instructions and row.instructions:
        ratio = row.instructions / base.instructions
        v.change = Change(ratio=ratio, ci95=(ratio, ratio), p_slower=0.0 if ratio > 1 else 1.0, rounds=(1, 1))
        if ratio - 1 > threshold:
            v.reasons.append(f"instructions +{100 * (ratio - 1):.1f} %")
        elif 1 - ratio > threshold:
            v.verdict = "faster"
    else:
        raise BaselineError(f"{row.label}: no instruction counts to compare (record both with --metric instructions)")
    v.reasons += _parity_reasons(base.parity or {}, row.parity or {})
    if v.reasons:
        v.verdict = "regression"
    return v


def _parity_reasons(old: dict[str, float], new: dict[str, float]) -> list[str]:
    out = []
    a, b = old.get("max_rel_error"), new.get("max_rel_error")
    if a is not None and b is not None and b > max(10 * a, a + 1e-5):
        out.append(f"parity max rel error {a:.2g} -> {b:.2g}")
    a, b = old.get("top1_agreement"), new.get("top1_agreement")
    if a is not None and b is not None and b < a - 0.01:
        out.append(f"top-1 agreement {100 * a:.1f} % -> {100 * b:.1f} %")
    a, b = old.get("accuracy_drop"), new.get("accuracy_drop")
    if a is not None and b is not None and b > a + 1.0:
        out.append(f"int8 accuracy drop {a:.2f} -> {b:.2f} points")
    return out


def summary_counts(report: GateReport) -> dict[str, int]:
    """How many rows got each verdict."""
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return counts


def verdict_order(rows: Sequence[RowVerdict]) -> list[RowVerdict]:
    """Regressions first, then failures, then the rest in their order."""
    rank = {"regression": 0, "failed": 1}
    return sorted(rows, key=lambda r: rank.get(r.verdict, 2))
