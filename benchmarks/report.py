"""People's views of a result and of a gate report: terminal table (rich or plain), Markdown, Pareto plot PNG.

Every view says what was measured: runtime versions, threads, batch, input size, precision, machine, and how
the figures were obtained (timed runs, rounds, the 95 % interval of the median).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks.environment import machine_line
from benchmarks.gate import GateReport, verdict_order
from benchmarks.schema import NOISY_CI, BenchResult, Row
from hsnet.toolbox.atomic import atomic_path, atomic_write_text
from hsnet.toolbox.tables import format_count, format_table, markdown_table

__all__ = [
    "context_lines",
    "gate_lines",
    "gate_markdown",
    "result_markdown",
    "result_table",
    "write_plot",
]

_HEADERS = [
    "model",
    "runtime",
    "prec",
    "thr",
    "median ms",
    "95% CI",
    "p90 ms",
    "min ms",
    "cpu ms",
    "cold ms",
    "RSS MB",
    "GMAC/s",
    "of peak",
    "params",
    "MACs",
    "size MB",
    "status",
]


#: The columns of timed figures, left out of a table of emulated rows.
_TIMED = ("median ms", "95% CI", "p90 ms", "min ms", "cpu ms", "cold ms", "RSS MB", "GMAC/s", "of peak")


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _columns(result: BenchResult) -> tuple[list[str], str]:
    """Headers and alignment; the instruction column only when a row has a count."""
    headers = list(_HEADERS)
    if any(r.instructions is not None for r in result.rows):
        headers.insert(headers.index("params"), "M instr")
    if any(r.kernels for r in result.rows):
        headers.insert(headers.index("params"), "kernels")
    if any(r.device for r in result.rows):
        headers.insert(0, "device")
    if result.rows and all(r.emulated or not r.ok for r in result.rows):  # emulated time is not a latency
        headers = [h for h in headers if h not in _TIMED]
    align = "".join("l" if h in ("device", "model", "runtime", "prec", "kernels", "status") else "r" for h in headers)
    return headers, align


def _cells(r: Row, headers: list[str]) -> list[str]:
    lat = r.latency
    ci = lat.ci_halfwidth_rel if lat else None
    cells = {
        "model": r.model,
        "runtime": r.runtime,
        "prec": r.precision,
        "thr": str(r.threads),
        "median ms": _f(lat.median_ms if lat else None),
        "95% CI": "-" if ci is None else f"±{100 * ci:.1f}%",
        "p90 ms": _f(lat.p90_ms if lat else None),
        "min ms": _f(lat.min_ms if lat else None),
        "cpu ms": _f(r.cpu_median_ms),
        "cold ms": _f(r.cold_start_ms, ".0f"),
        "RSS MB": _f(r.peak_rss_mb, ".0f"),
        "GMAC/s": _f(r.gmacs_per_s, ".1f"),
        "of peak": "-" if r.peak_share is None else f"{100 * r.peak_share:.0f}%",
        "M instr": "-" if r.instructions is None else f"{r.instructions / 1e6:.1f}",
        "kernels": kernel_text(r),
        "device": _device_cell(r),
        "params": format_count(r.params),
        "MACs": format_count(r.macs),
        "size MB": "-" if r.artifact_bytes is None else f"{r.artifact_bytes / 1e6:.2f}",
        "status": r.status if not r.flags else f"{r.status} ({', '.join(f.split(':')[0] for f in r.flags)})",
    }
    return [cells[h] for h in headers]


def kernel_text(r: Row) -> str:
    """The instruction classes of one inference as shares of its instructions (``sdot 38%, fmla 0.2%``), largest
    first, those above 0.1 %; ``-`` without counts."""
    if not r.kernels or not r.instructions:
        return "-"
    shares = sorted(((v / r.instructions, k) for k, v in r.kernels.items() if v), reverse=True)
    kept = [f"{k} {100 * s:.0f}%" if s >= 0.01 else f"{k} {100 * s:.1f}%" for s, k in shares if s >= 0.001]
    return ", ".join(kept) or "none"


def _device_cell(r: Row) -> str:
    info = r.device_info or {}
    if info.get("emulated"):
        cores = sorted(set(info.get("cores") or ()))
        return f"{r.device} (emulated {'/'.join(cores) or '?'})"
    return r.device or "-"


def device_lines(result: BenchResult) -> list[str]:
    """One line per device of the run: what it is, as read on it."""
    lines = []
    for name, info in (result.environment.get("devices") or {}).items():
        names = Counter(c["name"] for c in info.get("core_names") or ())
        cores = ", ".join(f"{n}x {k}" for k, n in names.items()) or f"{info.get('cores')} cores"
        v = info.get("versions") or {}
        runtimes = ", ".join(f"{k} {x}" for k, x in v.items() if x)
        how = f"emulated ({info['emulated']}, host {result.environment.get('cpu')})" if info.get("emulated") else (
            f"Linux {info.get('kernel')}")  # fmt: skip
        lines.append(f"device {name}: {cores}, {info.get('arch')}, {how}; python {info.get('python')}, {runtimes}")
    return lines


def context_lines(result: BenchResult) -> list[str]:
    """What the figures are and what measured them, one fact per line."""
    s, env = result.settings, result.environment
    rows = [r for r in result.rows if r.ok]
    versions = sorted({f"{r.runtime} {r.runtime_version}" for r in rows if r.runtime_version})
    sizes = sorted({r.input_size for r in result.rows})
    batches = sorted({r.batch for r in result.rows})
    runs = s.get("runs") or f">= {s.get('min_time_s')} s of"
    if s.get("metric") == "instructions" and any(r.emulated for r in result.rows):
        what = (
            f"guest instructions per inference (M instr) on the emulated device, counted by hsnet's QEMU TCG plugin: "
            f"median of {s.get('counted_calls')} steady-state calls, {s.get('processes', 1)} process(es), "
            "PYTHONHASHSEED=0; kernels = instruction classes as shares of them (fmla: NEON float multiply-add, "
            "sdot: int8 dot product, i8mm: int8 matrix multiply, fp16: half-precision vector, sve, sme); emulated "
            "time is not a latency and none is shown"
        )
    elif s.get("metric") == "instructions":
        what = (
            f"instructions per inference (M instr) counted by valgrind cachegrind: difference of runs with "
            f"{s.get('n2')} and {s.get('n1')} inferences, divided by {s.get('n2', 0) - s.get('n1', 0)}; "
            "valgrind's CPU has no AVX-512/AMX, so runtimes take their AVX2 kernels; no latency is measured"
        )
    else:
        what = ""
    lines = [
        f"latency of one inference of batch {', '.join(map(str, batches))} at "
        f"{', '.join(f'{v}x{v}' for v in sizes)}: wall-clock median of {runs} timed runs in {s.get('rounds_run')} "
        f"interleaved rounds ({s.get('processes', 1)} process(es) x {s.get('block_runs')} runs per round, each "
        f"block after {s.get('block_warmup')} untimed), "
        "95 % CI = distribution-free interval of the median; cpu ms = process CPU time per inference (median)",
        f"cold = load + first inference; RSS = peak resident memory of the measuring process; GMAC/s = MACs / median "
        f"latency, 'of peak' = share of this machine's float32 GEMM peak ({_gemm_text(result)})",
        f"runtimes: {'; '.join(versions) or '-'}; python {env.get('python')}, numpy "
        f"{(env.get('versions') or {}).get('numpy')}",
        f"machine: {machine_line(env)}; governor {env.get('governor')}; host {env.get('host')}",
    ]
    if what:
        lines = [what, *lines[2:]]
    devices = device_lines(result)
    if devices:
        lines[-1] = f"measured on the device(s) below; built here on {machine_line(env)}"
        lines += devices
    h = result.harness
    if h.get("overhead_ns") is not None:
        share = h.get("overhead_share")
        lines.append(
            f"harness overhead per timed call: {h['overhead_ns']:.0f} ns (max {h.get('overhead_ns_max', 0):.0f} ns)"
            + ("" if share is None else f" = {100 * share:.4f} % of the fastest median")
        )
    if result.wall_s is not None:
        lines.append(f"run took {result.wall_s:.0f} s (artifact builds included)")
    lines += noise_lines(result)
    return lines


def noise_lines(result: BenchResult) -> list[str]:
    """Warnings for rows whose figure cannot be trusted as it stands: a 95 % interval wider than ±:data:`NOISY_CI`
    (with the machine's load), bimodal samples, processes that disagree (:attr:`Row.flags`). Empty when none."""
    wide = [(r.label, r.latency.ci_halfwidth_rel) for r in result.rows if r.wide and r.latency is not None]
    lines = []
    env = result.environment
    load = env.get("loadavg") or []
    cores = env.get("usable_cores") or env.get("logical_cores")
    if wide:
        named = ", ".join(f"{label} ±{100 * ci:.0f} %" for label, ci in wide[:4]) + (" ..." if len(wide) > 4 else "")
        where = f" (load {load[0]:.1f} on {cores} cores at the start)" if load and cores else ""
        lines.append(
            f"warning: {len(wide)} row(s) noisy, 95 % interval wider than ±{100 * NOISY_CI:.0f} %{where}: {named}; "
            "re-run on a quieter machine or with more --rounds before trusting these medians or their ratios"
        )
    elif load and cores and load[0] > cores and result.settings.get("metric") != "instructions":  # counts: unmoved
        lines.append(f"warning: the machine was loaded (load {load[0]:.1f} on {cores} cores at the start)")
    for r in result.rows:
        for flag in r.flags:
            lines.append(
                f"warning: {r.label}: {flag}; a process (or a stretch of one) ran in another mode: re-measure in "
                "fresh processes before drawing a conclusion from this row"
            )
    return lines


def _gemm_text(result: BenchResult) -> str:
    parts = []
    for key, g in sorted(result.gemm.items(), key=lambda kv: (kv[0].rpartition(" ")[0], int(kv[0].rpartition(" ")[2]))):
        where, _, t = key.rpartition(" ")
        if g.get("peak"):
            on = f" on {where}" if where else ""
            parts.append(f"{g['peak']:.1f} GMAC/s at {t} thread{'s' if t != '1' else ''}{on}")
    return ", ".join(parts) or "not measured"


def result_table(result: BenchResult, *, rich: bool) -> str:
    """The result as a table with its context: rich (colour, for a terminal) or plain monospace text."""
    headers, align = _columns(result)
    rows = [_cells(r, headers) for r in result.rows]
    ctx = context_lines(result)
    if not rich:
        return format_table(headers, rows, align) + "\n\n" + "\n".join(ctx)
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title="hsnet bench", caption="\n".join(ctx), caption_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 3 or h == "status" else "right", no_wrap=h != "status")
    for r, cells in zip(result.rows, rows, strict=True):
        style = None if r.ok else ("yellow" if r.status.startswith("skipped") else "red")
        table.add_row(*cells, style=style)
    buf = StringIO()
    Console(file=buf, force_terminal=True, width=shutil.get_terminal_size((200, 40)).columns).print(table)
    return buf.getvalue().rstrip()


def result_markdown(result: BenchResult) -> str:
    """The result as a Markdown table followed by its context lines."""
    headers, _ = _columns(result)
    table = markdown_table(headers, [_cells(r, headers) for r in result.rows], "lll" + "r" * (len(headers) - 3))
    return f"{table}\n\n" + "\n".join(f"- {line}" for line in context_lines(result)) + "\n"


def gate_lines(report: GateReport) -> list[str]:
    """Per row: change in %, its 95 % interval, p-value, size change and verdict; then a summary line."""
    if report.metric == "instructions":
        return _count_gate_lines(report)
    rows = []
    for v in verdict_order(report.rows):
        c = v.change
        rows.append(
            [
                v.label,
                "-" if c is None else f"{c.percent:+.1f}%",
                "-" if c is None else f"[{100 * (c.ci95[0] - 1):+.1f}, {100 * (c.ci95[1] - 1):+.1f}]",
                "-" if c is None else f"{c.p_slower:.2g}",
                "-" if v.size_change is None else f"{100 * v.size_change:+.1f}%",
                v.verdict.upper() if v.verdict == "regression" else v.verdict,
                "; ".join(v.reasons),
            ]
        )
    table = format_table(["configuration", "change", "95% CI", "p(slower)", "size", "verdict", "why"], rows, "lrrrrll")
    norm = "relative to the same-round reference workload" if report.normalised else "raw (not normalised)"
    bad = sum(v.verdict in ("regression", "failed") for v in report.rows)
    outcome = f"FAIL: {bad} row(s) regressed or failed" if bad else "PASS"
    if not bad and report.outcome == "inconclusive" and report.inconclusive:
        outcome = (
            f"INCONCLUSIVE: {report.inconclusive}; the same-run reference cancels a "
            "slower machine, not another microarchitecture: record a baseline on this CPU model "
            "(benchmarks/baselines/) or gate base against head in one run (benchmarks/ci/bench-gate.yml)"
        )
    elif not bad and report.outcome == "inconclusive":
        noisy = sum(v.verdict == "inconclusive" for v in report.rows)
        outcome = (
            f"INCONCLUSIVE: {noisy} row(s) too noisy to decide (95 % interval wider than ±{100 * NOISY_CI:.0f} % and "
            "the change's interval holds the threshold); re-run on a quieter machine or with more --rounds"
        )
    return [
        table,
        "",
        f"change = {report.metric} time per inference, median of per-round ratios {norm}, new vs baseline; "
        f"regression = one-sided Mann-Whitney p < {report.alpha:g} and change > {100 * report.threshold:g} %; "
        f"also artifact size > +{100 * report.threshold:g} %, parity worse, or ok -> failed",
        outcome,
    ]


def _count_gate_lines(report: GateReport) -> list[str]:
    """The gate on instruction counts: deterministic, so no interval and no test, the threshold alone."""
    rows = [[v.label, "-" if v.change is None else f"{v.change.percent:+.3f}%",
             v.verdict.upper() if v.verdict == "regression" else v.verdict, "; ".join(v.reasons)]
            for v in verdict_order(report.rows)]  # fmt: skip
    bad = sum(v.verdict in ("regression", "failed") for v in report.rows)
    undecided = sum(v.verdict == "inconclusive" for v in report.rows)
    if bad:
        outcome = f"FAIL: {bad} row(s) regressed or failed"
    elif undecided:
        outcome = (f"INCONCLUSIVE: {undecided} row(s) whose artifact was built differently on this host's CPU; "
                   "record a baseline built on this CPU model")  # fmt: skip
    else:
        outcome = "PASS"
    return [
        format_table(["configuration", "change", "verdict", "why"], rows, "lrll"),
        "",
        f"change = instructions per inference, new vs baseline (exact counts: no interval, no test); regression = "
        f"change > {100 * report.threshold:g} %, or ok -> failed",
        outcome,
    ]


def gate_markdown(report: GateReport) -> str:
    lines = gate_lines(report)
    return "```\n" + "\n".join(lines) + "\n```\n"


def write_text(path: str | Path, text: str) -> Path:
    """Write a report file atomically."""
    return atomic_write_text(path, text)


def write_plot(result: BenchResult, path: str | Path) -> Path:
    """Pareto plot PNG: median latency against MACs, parameters and (when known) top-1 accuracy.

    One marker series per runtime/precision/threads; the Pareto front (nothing both faster and cheaper) is
    drawn per series. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.ok and r.latency]
    axes_spec = [("macs", "MACs (millions)", 1e-6), ("params", "parameters (millions)", 1e-6)]
    if any(r.accuracy_top1 is not None for r in rows):
        axes_spec.append(("accuracy_top1", "top-1 accuracy (%) from the checkpoint", 1.0))
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(6 * len(axes_spec), 5), squeeze=False)
    series: dict[str, list[Row]] = {}
    for r in rows:
        series.setdefault(f"{r.runtime} {r.runtime_version} {r.precision} {r.threads}t", []).append(r)
    for ax, (attr, label, scale) in zip(axes[0], axes_spec, strict=True):
        for name, members in sorted(series.items()):
            pts = [
                (getattr(r, attr) * scale, r.latency.median_ms, r.model)
                for r in members
                if getattr(r, attr) is not None
            ]
            if not pts:
                continue
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=name)
            front = _pareto(pts, higher_is_better=attr == "accuracy_top1")
            ax.plot([p[0] for p in front], [p[1] for p in front], "-", color=line.get_color(), alpha=0.5)
            for x, y, model in pts:
                ax.annotate(model, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("median latency (ms), wall clock")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {label} known for these rows", ha="center", transform=ax.transAxes)
    sizes = sorted({r.input_size for r in rows})
    batches = sorted({r.batch for r in rows})
    fig.suptitle(
        f"hsnet bench: latency of one batch-{','.join(map(str, batches))} inference at "
        f"{','.join(f'{s}x{s}' for s in sizes)} (lines: Pareto fronts)\n{machine_line(result.environment)}",
        fontsize=10,
    )
    return _save_png(fig, path)


def _pareto(points: Sequence[tuple[float, float, str]], *, higher_is_better: bool) -> list[tuple[float, float, str]]:
    """Points not dominated by another (lower latency and lower cost, or higher accuracy), sorted by x."""
    front = []
    for p in points:
        dominated = False
        for q in points:
            if q is p:
                continue
            better_x = q[0] >= p[0] if higher_is_better else q[0] <= p[0]
            if better_x and q[1] <= p[1] and (q[0] != p[0] or q[1] != p[1]):
                dominated = True
                break
        if not dominated:
            front.append(p)
    return sorted(front)


def ops_lines(result: BenchResult) -> list[str]:
    """The per-operator breakdown of every row that has one (``--ops``): a table per row and how its node times
    add up against the row's median; a line saying why for rows without one."""
    from benchmarks.ops import KINDS

    lines: list[str] = []
    for r in result.rows:
        ops = r.ops
        if ops is None:
            continue
        if not ops.get("available"):
            lines.append(f"\n{r.label}: per-operator profile not available: {ops.get('reason')}")
            continue
        rows = []
        for kind in KINDS:
            k = ops["kinds"].get(kind)
            if k is None:
                continue
            rows.append([
                kind, f"{k['ms']:.3f}", _share(k["time_share"]), _share(k["mac_share"]),
                "-" if k["gmacs_per_s"] is None else f"{k['gmacs_per_s']:.1f}",
            ])  # fmt: skip
        lines += ["", f"{r.label}: where the time goes ({ops['source']}; {ops['nodes']} nodes)"]
        lines.append(format_table(["kind", "ms", "time", "MACs", "GMAC/s"], rows, "lrrrr"))
        ratio = ops.get("sum_vs_median")
        lines.append(
            f"node times sum to {ops['sum_ms']:.3f} ms"
            + ("" if ratio is None else f" = {ratio:.2f}x the row's median ({ops['median_ms']:.3f} ms)")
            + f"; a profiled call took {ops['profiled_run_ms']:.3f} ms (profiling adds a little per node)"
        )
    return lines


def _share(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def write_ops_plot(result: BenchResult, path: str | Path) -> Path:
    """PNG: per row with a breakdown, share of time beside share of MACs per operator kind. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.ops import KINDS

    rows = [r for r in result.rows if r.ops and r.ops.get("available")]
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(5 * max(1, len(rows)), 4.5), squeeze=False)
    for ax, r in zip(axes[0], rows, strict=False):
        kinds = [k for k in KINDS if k in r.ops["kinds"]]
        x = range(len(kinds))
        time = [100 * (r.ops["kinds"][k]["time_share"] or 0) for k in kinds]
        macs = [100 * (r.ops["kinds"][k]["mac_share"] or 0) for k in kinds]
        ax.bar([i - 0.2 for i in x], time, width=0.4, label="share of time")
        ax.bar([i + 0.2 for i in x], macs, width=0.4, label="share of MACs")
        ax.set_xticks(list(x), kinds, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("%")
        ax.set_title(f"{r.label}\n{r.runtime} {r.runtime_version}, median {r.latency.median_ms:.2f} ms"
                     if r.latency else r.label, fontsize=9)  # fmt: skip
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no row has a per-operator profile", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle(f"hsnet bench --ops: time vs MACs per operator kind\n{machine_line(result.environment)}", fontsize=10)
    return _save_png(fig, path)


def _save_png(fig, path: str | Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Lay out ``fig``, write it as a PNG atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
