"""The versioned result schema: one row per (model, runtime, precision, threads, batch, input size).

Every runtime fills the same :class:`Row`; a result file is a :class:`BenchResult` (rows plus the environment,
the GEMM peak, the reference workload and the harness overhead of the run). ``schema_version`` changes whenever a
field changes meaning or is removed; readers refuse other versions with one line (adding an optional field does
not change the version). The fields are documented in docs/benchmarking.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import BaselineError
from benchmarks.stats import Summary, summarize
from hsnet.toolbox.atomic import atomic_write_json

__all__ = ["KIND", "SCHEMA_VERSION", "BenchResult", "Latency", "Row", "load_result", "ms_rounds", "save_result"]

KIND = "hsnet-bench"
SCHEMA_VERSION = 1

STATUS_OK = "ok"


@dataclass
class Latency:
    """Latency of one inference (one batch) in milliseconds, from the timed runs only."""

    runs: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    mean_ms: float
    iqr_ms: float
    ci95_low_ms: float | None
    ci95_high_ms: float | None

    @classmethod
    def from_summary(cls, s: Summary) -> Latency:
        """Convert a :class:`Summary` of samples in seconds."""
        ci = s.ci95
        return cls(
            runs=s.n,
            median_ms=s.median * 1e3,
            p90_ms=s.p90 * 1e3,
            p99_ms=s.p99 * 1e3,
            min_ms=s.min * 1e3,
            mean_ms=s.mean * 1e3,
            iqr_ms=s.iqr * 1e3,
            ci95_low_ms=None if ci is None else ci[0] * 1e3,
            ci95_high_ms=None if ci is None else ci[1] * 1e3,
        )

    @property
    def ci_halfwidth_rel(self) -> float | None:
        """Largest distance from the median to an end of its 95 % interval, relative to the median."""
        if self.ci95_low_ms is None or self.ci95_high_ms is None or self.median_ms <= 0:
            return None
        return max(self.median_ms - self.ci95_low_ms, self.ci95_high_ms - self.median_ms) / self.median_ms


@dataclass
class Row:
    """One measured (or skipped, or failed) configuration.

    ``status`` is ``"ok"``, ``"failed: <reason>"`` or ``"skipped: <reason>"``; only ``ok`` rows carry latency.
    ``samples_ms`` holds the raw timed samples grouped by round (the gate needs the rounds);
    ``process_medians_ms`` each worker process's median; ``flags`` what makes the figure untrustworthy
    (``bimodal: ...``, ``processes disagree: ...``; :func:`benchmarks.rounds.flag_row`).
    ``device`` names the device of a row measured there (``ssh://board``, ``qemu:cortex-a76``; None: this host);
    ``device_info`` is what was read on it (:func:`hsnet.devices.remote.probe`, temperatures before and after);
    ``kernels`` the instruction classes of one inference on the emulated device (fmla, sdot, i8mm, fp16, sve, sme).
    """

    model: str
    runtime: str
    precision: str
    threads: int
    batch: int
    input_size: int
    status: str = STATUS_OK
    num_classes: int | None = None
    runtime_version: str | None = None
    weights: str | None = None
    params: int | None = None
    macs: int | None = None
    artifact: str | None = None
    artifact_bytes: int | None = None
    artifact_sha256: str | None = None
    import_ms: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    cold_start_ms: float | None = None
    latency: Latency | None = None
    throughput_ips: float | None = None
    peak_rss_mb: float | None = None
    gmacs_per_s: float | None = None
    peak_share: float | None = None
    cpu_util: float | None = None
    parity: dict[str, float] | None = None
    accuracy_top1: float | None = None
    instructions: float | None = None
    cpu_median_ms: float | None = None
    process_medians_ms: list[float] | None = None
    flags: list[str] = field(default_factory=list)
    ops: dict[str, Any] | None = None
    device: str | None = None
    device_info: dict[str, Any] | None = None
    kernels: dict[str, float] | None = None
    samples_ms: list[list[float]] = field(default_factory=list)
    cpu_samples_ms: list[list[float]] = field(default_factory=list)
    switches: list[list[int]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, int, int, int, str | None]:
        """What identifies a configuration across runs (the device last: None for this host)."""
        return (self.model, self.runtime, self.precision, self.threads, self.batch, self.input_size, self.device)

    @property
    def label(self) -> str:
        where = f" @ {self.device}" if self.device else ""
        return f"{self.model} {self.runtime} {self.precision} t{self.threads} b{self.batch} {self.input_size}px{where}"

    @property
    def reference_key(self) -> str:
        """The key of this row's same-run reference workload (and GEMM peak) in :class:`BenchResult`."""
        return f"{self.device} {self.threads}" if self.device else str(self.threads)

    @property
    def emulated(self) -> bool:
        """Measured on an emulated device: its wall time is not a latency."""
        return bool((self.device_info or {}).get("emulated"))

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def wide(self) -> bool:
        """True when the median's 95 % interval is wider than ±:data:`NOISY_CI`: too wide to say much."""
        lat = self.latency
        return lat is not None and lat.ci_halfwidth_rel is not None and lat.ci_halfwidth_rel > NOISY_CI

    @property
    def noisy(self) -> bool:
        """:attr:`wide`, or the samples are bimodal or the processes disagree (:attr:`flags`)."""
        return self.wide or bool(self.flags)

    def set_samples(self, rounds: list[list[float]], cpu_rounds: list[list[float]] | None = None) -> None:
        """Fill latency, throughput and samples from timed samples in seconds, grouped by round.

        ``cpu_rounds`` are the same calls' process CPU times (the low-noise metric of the gate).
        """
        flat = [t for block in rounds for t in block]
        self.samples_ms = ms_rounds(rounds)
        self.latency = Latency.from_summary(summarize(flat))
        self.throughput_ips = self.batch / (self.latency.median_ms / 1e3)
        if cpu_rounds:
            self.cpu_samples_ms = ms_rounds(cpu_rounds)
            self.cpu_median_ms = float(np.median([t for block in cpu_rounds for t in block])) * 1e3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        d = dict(d)
        lat = d.pop("latency", None)
        row = cls(**_known(cls, d, "row"))
        row.latency = None if lat is None else Latency(**_known(Latency, lat, "latency"))
        return row


#: A row whose median's 95 % interval is wider than this (relative half-width) is flagged as noisy.
NOISY_CI = 0.10


@dataclass
class BenchResult:
    """A whole run: rows plus what is needed to trust and compare them.

    Attributes:
        rows: one per configuration, in the order measured.
        environment: machine and software versions (see :func:`benchmarks.environment.collect_environment`).
        settings: how the run was made (runs, rounds, block size, warm-up, metric, ...).
        gemm: per thread count, achieved GMAC/s of numpy's and torch's matmul and their maximum (``peak``).
        reference: per thread count (as a string key; ``"DEVICE THREADS"`` for a device's rows), the reference
            workload's samples by round, in ms (:attr:`Row.reference_key`).
        harness: the timing loop's own cost (``overhead_ns``) and its share of the fastest median.
        created: UTC time the run finished, ISO 8601.
        wall_s: wall time of the whole run, artifact builds included.
    """

    rows: list[Row]
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    gemm: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    harness: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    wall_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": KIND, "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.name != "rows":
                d[f.name] = getattr(self, f.name)
        d["noisy_rows"] = [r.label for r in self.rows if r.noisy]  # derived, for readers of the JSON
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "result") -> BenchResult:
        """Validate and rebuild a result.

        Raises:
            BaselineError: not a bench result, another schema version, or malformed (one line, naming ``source``).
        """
        if not isinstance(d, dict) or d.get("kind") != KIND:
            raise BaselineError(f'{source} is not an hsnet bench result (no "kind": "{KIND}")')
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BaselineError(
                f"{source} has schema version {version!r}; this hsnet reads version {SCHEMA_VERSION} "
                "(re-record it with this version of hsnet bench)"
            )
        if not isinstance(d.get("rows"), list):
            raise BaselineError(f"{source} is malformed: result lacks rows")
        try:
            rows = [Row.from_dict(r) for r in d["rows"]]
            rest = {k: v for k, v in d.items() if k not in ("kind", "schema_version")}
            return cls(**_known(cls, {**rest, "rows": rows}, "result"))
        except (KeyError, TypeError, ValueError) as e:
            raise BaselineError(f"{source} is malformed: {_one_line(e)}") from None

    def reference_rounds(self, threads: int) -> list[list[float]] | None:
        """The reference workload's samples by round for ``threads``, or None if not measured."""
        ref = self.reference.get(str(threads))
        return None if ref is None else ref.get("samples_ms")


def ms_rounds(rounds: list[list[float]]) -> list[list[float]]:
    """Seconds to milliseconds, rounded to the nanosecond (the clocks' resolution) to keep files small."""
    return [[round(t * 1e3, 6) for t in block] for block in rounds]


def _known(cls: type, d: dict[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = required - d.keys()
    if missing:
        raise ValueError(f"{what} lacks {', '.join(sorted(missing))}")
    return {k: v for k, v in d.items() if k in names}  # unknown keys: optional fields of a newer minor writer


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def save_result(result: BenchResult, path: str | Path) -> Path:
    """Write ``result`` as JSON, atomically."""
    return atomic_write_json(path, result.to_dict())


def load_result(path: str | Path) -> BenchResult:
    """Read a result or baseline file.

    Raises:
        BaselineError: missing, unreadable, not JSON, not a bench result, another schema version, malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BaselineError(f"{path} cannot be read: {_one_line(e)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BaselineError(f"{path} is not valid JSON (line {e.lineno}: {e.msg}); is it truncated?") from None
    return BenchResult.from_dict(data, source=str(path))
