"""``hsnet bench`` and ``hsnet bench compare``: thin click layer over :mod:`benchmarks` (imported lazily).

Exit status (:mod:`hsnet.errors`): 0 pass, 1 regression (or a row that was ok in the baseline failed), 2 usage
error (unknown model, runtime, precision or device, bad option, unreadable or incompatible baseline, unwritable
output), 3 nothing could be done, 130 Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hsnet.errors import EXIT_CHECK_FAILED, EXIT_INCONCLUSIVE
from hsnet.toolbox.cli import NUM_CLASSES, emit_json, user_errors

__all__ = ["bench"]


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (text or "").split(",") if v.strip())


def _ints(name: str, text: str) -> tuple[int, ...]:
    from benchmarks.errors import BenchError

    try:
        values = tuple(int(v) for v in _csv(text))
    except ValueError:
        raise BenchError(f"--{name} takes comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BenchError(f"--{name} takes comma-separated positive integers, got {text!r}")
    return values


def _emit(text: str) -> None:
    click.echo(text)


def _write_outputs(result: Any, json_path: Path | None, md_path: Path | None, plot_path: Path | None) -> None:
    from benchmarks.report import result_markdown, write_plot, write_text
    from benchmarks.schema import save_result

    if json_path:
        save_result(result, json_path)
        click.echo(f"wrote {json_path}", err=True)
    if md_path:
        write_text(md_path, result_markdown(result))
        click.echo(f"wrote {md_path}", err=True)
    if plot_path:
        write_plot(result, plot_path)
        click.echo(f"wrote {plot_path}", err=True)


def _gate(old: Any, new: Any, threshold: float, metric: str, json_path: Path | None) -> str:
    from benchmarks.gate import compare_results
    from benchmarks.report import gate_lines
    from hsnet.toolbox.atomic import atomic_write_json

    report = compare_results(old, new, threshold=threshold, metric=metric)
    _emit("\n".join(gate_lines(report)))
    if json_path:
        atomic_write_json(json_path, report.to_dict())
    return report.outcome


def _exit_for(outcome: str) -> None:
    """The gate's answer as the exit status: 1 a regression, 4 inconclusive (:mod:`hsnet.errors`), else return."""
    if outcome == "fail":
        raise SystemExit(EXIT_CHECK_FAILED)
    if outcome == "inconclusive":
        raise SystemExit(EXIT_INCONCLUSIVE)


@click.group("bench", invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", default="cpu", show_default=True, help="Where to run here (only cpu); see --remote.")
@click.option(
    "--remote",
    "remotes",
    multiple=True,
    metavar="DEVICE",
    help="Measure on a device instead (repeatable: one table, a device column): ssh://[user@]host[:port] (timed "
    "as here), or the emulated qemu:cortex-a53|a72|a76 (instructions per inference: its time is not a latency).",
)
@click.option(
    "--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="With --remote: an ssh -o option."
)
@click.option("--ssh-config", default=None, help="With --remote: an ssh config file instead of ~/.ssh/config.")
@click.option("--cores", default=None, help="With --remote: pin each worker on the device: big, little or CPU ids.")
@click.option("--cooldown", type=click.FloatRange(0), default=0.0, help="With --remote: idle seconds before the "
              "rounds on a board (before each configuration on the emulated device).")  # fmt: skip
@click.option("--thermal-limit", type=click.FloatRange(0, 150), default=None, metavar="CELSIUS", help="With --remote: "
              "wait while a thermal zone of the device is above this, and flag the row.")  # fmt: skip
@click.option(
    "--models",
    default=None,
    help="Comma-separated model names, or 'all' [default: hsnet and the paper's six lightweight baselines].",
)
@click.option(
    "--runtimes",
    default=None,
    help="Comma-separated: torch, onnxruntime, tflite, coreml [default: torch,onnxruntime,tflite; with --remote: "
    "onnxruntime,tflite].",
)
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated: fp32, fp16, int8.")
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts, each measured.")
@click.option("--input-size", type=click.IntRange(8, 4096), default=224, show_default=True)
@click.option("--batch", type=click.IntRange(1, 4096), default=1, show_default=True)
@click.option(
    "--num-classes",
    type=NUM_CLASSES,
    default=100,
    show_default=True,
    help="Classifier width of every model (the paper's Table 4 uses 100).",
)
@click.option("--runs", type=click.IntRange(6), default=None, help="Timed runs per configuration [default: 100].")
@click.option(
    "--min-time",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Instead of --runs: add rounds until each configuration has S seconds of timed runs.",
)
@click.option("--rounds", type=click.IntRange(2), default=20, show_default=True, help="Interleaved rounds.")
@click.option(
    "--processes",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Worker processes per configuration, interleaved in every round: their own biases average out, and a "
    "process stuck in a slow mode shows (the row is flagged).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the result JSON.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a Markdown table.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a Pareto plot PNG.")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    help="Compare with this result, or with the result in this folder recorded on this machine's CPU model.",
)
@click.option(
    "--fail-on-regression",
    "threshold",
    default=None,
    metavar="PCT",
    help="With --baseline: exit 1 when a row regresses by more than PCT (e.g. 5%).",
)
@click.option(
    "--gate-metric",
    type=click.Choice(["cpu", "wall", "instructions"]),
    default=None,
    help="What the gate compares: process CPU time per inference [default], wall clock, or instruction counts "
    "[default with --metric instructions].",
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Weights for the model the checkpoint holds (repeatable); adds accuracy to the plot.",
)
@click.option(
    "--model",
    "user_models",
    multiple=True,
    help="Your own network beside the zoo: module:callable or path/to/file.py:callable returning an nn.Module "
    "(repeatable; measured at --input-size and --batch).",
)
@click.option(
    "--artifact",
    "artifacts",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Measure this artifact file as given (repeatable).",
)
@click.option("--pin/--no-pin", default=False, show_default=True, help="Pin workers to the first THREADS cores.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds a worker may take to load, or to run one block, before its row fails.",
)
@click.option(
    "--metric",
    type=click.Choice(["time", "instructions"]),
    default=None,
    help="time: latency [default]; instructions: instructions per inference, deterministic (here under valgrind; "
    "on an emulated device by its plugin, its only metric).",
)
@click.option(
    "--ops",
    is_flag=True,
    help="Per-operator breakdown of each row from its runtime's own profiler (onnxruntime): time and MACs per "
    "operator kind (pointwise, depthwise, grouped, dense, linear, attention, layout, other).",
)
@click.option("--ops-layers", is_flag=True, help="With --ops: keep every node's time in the JSON.")
@click.option("--ops-plot", type=click.Path(dir_okay=False, path_type=Path), help="With --ops: write a PNG of time "
              "share beside MAC share per kind.")  # fmt: skip
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Artifact cache [default: $HSNET_CACHE or ~/.cache/hsnet/artifacts].",
)
@click.pass_context
@user_errors
def bench(ctx: click.Context, **opts: Any) -> None:
    """Benchmark latency across models, runtimes and precisions; optionally gate against a baseline.

    Exit status: 0 pass, 1 regression, 2 usage error, 3 nothing measured, 4 inconclusive (a baseline from another
    CPU model), 130 interrupted.
    """
    if ctx.invoked_subcommand is not None:
        return
    _run(opts)


def _run(o: dict[str, Any]) -> None:
    from benchmarks.errors import BenchError
    from benchmarks.gate import parse_threshold
    from benchmarks.report import result_table
    from benchmarks.rounds import Settings
    from benchmarks.schema import load_result
    from benchmarks.suite import DEFAULT_MODELS, BenchRequest, run_bench
    from hsnet.registry import list_models
    from hsnet.toolbox.atomic import check_writable_file

    if (o["ops_layers"] or o["ops_plot"]) and not o["ops"]:
        raise BenchError("--ops-layers and --ops-plot need --ops")
    devices = _devices(o)
    if o["runtimes"] is None:
        o["runtimes"] = "onnxruntime,tflite" if devices else "torch,onnxruntime,tflite"
    if o["ops"] and o["metric"] == "instructions":
        raise BenchError("--ops measures time per operator; it does not combine with --metric instructions")
    for key, what in (("json_path", "--json"), ("md_path", "--markdown"), ("plot_path", "--plot"),
                      ("ops_plot", "--ops-plot")):  # fmt: skip
        if o[key] is not None:  # before minutes of measuring, not after
            check_writable_file(o[key], what=f"{what} file")
    if o["runs"] is not None and o["min_time"] is not None:
        raise BenchError("give --runs or --min-time, not both")
    if o["threshold"] is not None and o["baseline"] is None:
        raise BenchError("--fail-on-regression needs --baseline FILE")
    from benchmarks.gate import MIN_GATE_ROUNDS

    if o["baseline"] is not None and o["rounds"] < MIN_GATE_ROUNDS:
        raise BenchError(f"the gate's test needs --rounds >= {MIN_GATE_ROUNDS} (got {o['rounds']})")
    mine = o["artifacts"] or o["user_models"]
    models = _csv(o["models"]) if o["models"] is not None else (DEFAULT_MODELS if not mine else ())
    if models == ("all",):
        models = tuple(list_models())
    threads = _ints("threads", o["threads"])
    rounds = o["rounds"]
    settings = Settings(
        runs=o["runs"] or 100,
        rounds=rounds,
        processes=o["processes"],
        min_time_s=o["min_time"],
        pin=tuple(range(max(threads))) if o["pin"] else None,
        start_timeout_s=o["timeout"],
        block_timeout_s=o["timeout"],
        ops=o["ops"],
        ops_layers=o["ops_layers"],
    )
    req = BenchRequest(
        models=models,
        runtimes=_csv(o["runtimes"]),
        precisions=_csv(o["precisions"]),
        threads=threads,
        input_size=o["input_size"],
        batch=o["batch"],
        num_classes=o["num_classes"],
        checkpoints=tuple(o["checkpoints"]),
        artifacts=tuple(o["artifacts"]),
        user_models=tuple(o["user_models"]),
        device=o["device"],
        settings=settings,
        cache=o["cache"],
    )
    from benchmarks.suite import validate_request

    validate_request(req)
    if o["ops"]:
        _check_ops_runtimes(req)
    threshold = parse_threshold(o["threshold"]) if o["threshold"] is not None else 0.05
    baseline = None
    if o["baseline"] is not None:  # fail before measuring
        from benchmarks.gate import select_baseline

        path = select_baseline(o["baseline"], remote=[d.name for d in devices] or None)
        click.echo(f"baseline: {path}", err=True)
        baseline = load_result(path)
    if baseline is not None:
        _precheck_baseline(baseline, req)
    if devices:
        from benchmarks.on_device import DeviceOptions, run_on_devices

        options = DeviceOptions(cores=o["cores"], cooldown_s=o["cooldown"], thermal_limit_c=o["thermal_limit"])
        result = run_on_devices(req, devices, options=options, metric=o["metric"])
    elif o["metric"] == "instructions":
        from benchmarks.instructions import run_instructions

        result = run_instructions(req)
    else:
        result = run_bench(req)
    _emit(result_table(result, rich=sys.stdout.isatty()))
    if o["ops"]:
        from benchmarks.report import ops_lines, write_ops_plot

        _emit("\n".join(ops_lines(result)))
        if o["ops_plot"] is not None:
            write_ops_plot(result, o["ops_plot"])
    _write_outputs(result, o["json_path"], o["md_path"], o["plot_path"])
    _require_a_measured_row(result)
    if baseline is not None:
        _emit("")
        metric = o["gate_metric"] or ("instructions" if result.settings.get("metric") == "instructions" else "cpu")
        outcome = _gate(baseline, result, threshold, metric, None)
        if o["threshold"] is not None:
            _exit_for(outcome)


def _devices(o: dict[str, Any]) -> tuple[Any, ...]:
    """The ``--remote`` devices, parsed, and ``o["metric"]`` settled for them (usage errors before any work)."""
    from benchmarks.errors import BenchError
    from hsnet.devices.remote import parse_device

    devices = tuple(parse_device(t, ssh_options=o["ssh_options"], ssh_config=o["ssh_config"]) for t in o["remotes"])
    if not devices:
        flags = (("--ssh-option", "ssh_options"), ("--ssh-config", "ssh_config"), ("--cores", "cores"),
                 ("--cooldown", "cooldown"), ("--thermal-limit", "thermal_limit"))  # fmt: skip
        given = [flag for flag, key in flags if o[key]]
        if given:
            raise BenchError(f"{', '.join(given)} need --remote DEVICE")
        o["metric"] = o["metric"] or "time"
        return devices
    emulated = [d.name for d in devices if d.emulated]
    if emulated and o["metric"] == "time":
        raise BenchError(f"{emulated[0]}: emulated time is not a latency (100-700x slower, +-40 %); an emulated device "
                         "measures --metric instructions")  # fmt: skip
    if o["ops"]:
        raise BenchError("--ops profiles on this host only (not with --remote)")
    if o["metric"] is None and o["baseline"] is not None and emulated and len(emulated) != len(devices):
        raise BenchError("a gate compares one metric: with --baseline give --metric, or emulated or ssh:// devices")
    o["metric"] = o["metric"] or ("instructions" if len(emulated) == len(devices) else None)  # None: per device
    return devices


def _check_ops_runtimes(req: Any) -> None:
    """``--ops`` needs a runtime with a per-operator profiler among those asked for (one line otherwise)."""
    from benchmarks.errors import BenchError

    suffixes = {".onnx": "onnxruntime", ".tflite": "tflite", ".pt2": "torch", ".mlpackage": "coreml"}
    runtimes = set(req.runtimes) if req.models or req.user_models else set()
    runtimes |= {suffixes.get(Path(a).suffix.lower(), "?") for a in req.artifacts}
    if "onnxruntime" not in runtimes:
        raise BenchError(
            f"--ops: no selected runtime has a per-operator profiler ({', '.join(sorted(runtimes))}); onnxruntime has "
            "(add --runtimes onnxruntime or an .onnx --artifact); LiteRT's Python interpreter has none"
        )


def _require_a_measured_row(result: Any) -> None:
    """A run in which no row was measured is never a success (exit 3, :class:`hsnet.errors.ToolFailure`)."""
    from hsnet.errors import ToolFailure

    if result.rows and not any(r.status == "ok" for r in result.rows):
        statuses = sorted({r.status for r in result.rows})
        raise ToolFailure(f"no configuration was measured ({len(result.rows)} row(s): {'; '.join(statuses)[:300]})")
    if not result.rows:
        raise ToolFailure("no configuration was measured (nothing to run for this request)")


def _precheck_baseline(baseline: Any, req: Any) -> None:
    """Refuse an incompatible baseline before spending minutes measuring."""
    from benchmarks.errors import BaselineError

    sizes = {r.input_size for r in baseline.rows}
    if req.models and req.input_size not in sizes:
        raise BaselineError(
            f"incompatible baseline: it was measured at input size {', '.join(map(str, sorted(sizes)))}, this run "
            f"asks for {req.input_size}; re-record the baseline with the same settings"
        )
    batches = {r.batch for r in baseline.rows}
    if req.models and req.batch not in batches:
        raise BaselineError(
            f"incompatible baseline: it was measured at batch {', '.join(map(str, sorted(batches)))}, this run "
            f"asks for batch {req.batch}"
        )


@bench.command("compare")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--threshold", default="5%", show_default=True, help="Regression threshold (e.g. 5%).")
@click.option(
    "--gate-metric",
    type=click.Choice(["cpu", "wall", "instructions"]),
    default="cpu",
    show_default=True,
    help="What is compared: process CPU time per inference, wall clock, or instruction counts.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the verdicts.")
@user_errors
def compare_cmd(old: Path, new: Path, threshold: str, gate_metric: str, json_path: Path | None) -> None:
    """Gate NEW against the baseline OLD (two `hsnet bench --json` results).

    Exit status: 0 pass, 1 regression, 2 unreadable or incompatible files, 4 inconclusive (another CPU model).
    """
    from benchmarks.gate import parse_threshold
    from benchmarks.schema import load_result
    from hsnet.toolbox.atomic import check_writable_file

    t = parse_threshold(threshold)
    if json_path is not None:
        check_writable_file(json_path, what="--json file")
    a, b = load_result(old), load_result(new)
    _exit_for(_gate(a, b, t, gate_metric, json_path))


@bench.command("gate-proof")
@click.option("--pairs", type=click.IntRange(1), default=100, show_default=True, help="Trials (A, B and S runs each).")
@click.option("--models", default="hsnet,shufflenetv2_100", show_default=True, help="Comma-separated names.")
@click.option("--runtimes", default="onnxruntime", show_default=True, help="Comma-separated runtimes.")
@click.option("--input-size", type=click.IntRange(8, 4096), default=96, show_default=True)
@click.option("--rounds", type=click.IntRange(2), default=20, show_default=True)
@click.option("--runs", type=click.IntRange(6), default=120, show_default=True)
@click.option("--processes", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--slowdown", type=click.FloatRange(0, 1, min_open=True), default=0.10, show_default=True,
              help="Injected slowdown of the S runs, as a share of the median CPU time.")  # fmt: skip
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--remote", default=None, metavar="qemu:CORE", help="Prove the instruction-count gate on this emulated "
              "device instead (with --precision; --slowdown and --threshold default to 3 % and 1 %).")  # fmt: skip
@click.option("--precision", "precisions", default="fp32,int8", show_default=True, help="With --remote.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the tallies.")
@click.pass_context
@user_errors
def gate_proof_cmd(ctx: click.Context, pairs: int, models: str, runtimes: str, input_size: int, rounds: int, runs: int,
                   processes: int, slowdown: float, threshold: float, seed: int, remote: str | None, precisions: str,
                   json_path: Path | None) -> None:  # fmt: skip
    """Measure the gate's false alarms (A/A) and detections (an injected slowdown) on this machine, or on an
    emulated device (--remote qemu:CORE: the instruction-count gate)."""
    from benchmarks.environment import machine_line
    from benchmarks.gate_proof import run_proof
    from benchmarks.rounds import Settings
    from hsnet.toolbox.atomic import atomic_write_json, check_writable_file

    if json_path is not None:
        check_writable_file(json_path, what="--json file")
    if remote is not None:
        _count_proof(ctx, remote, pairs, models, runtimes, precisions, input_size, processes, slowdown, threshold,
                     json_path)  # fmt: skip
        return
    out = run_proof(
        pairs=pairs, models=list(_csv(models)), runtimes=list(_csv(runtimes)), input_size=input_size,
        settings=Settings(runs=runs, rounds=rounds, processes=processes), slowdown=slowdown, threshold=threshold,
        seed=seed, log=lambda s: click.echo(s, err=True),
    )  # fmt: skip
    click.echo(f"machine: {machine_line(out['environment'])}")
    for name, r in out["results"].items():
        click.echo(
            f"{name:40s} false alarms {r['false_alarms']}/{r['aa_comparisons']} ({100 * r['false_alarm_rate']:.1f} %)"
            f"  caught {r['caught']}/{r['slowdown_comparisons']} ({100 * r['detection_rate']:.1f} %)"
        )
    if json_path:
        atomic_write_json(json_path, out)


def _count_proof(ctx: click.Context, remote: str, pairs: int, models: str, runtimes: str, precisions: str,
                 input_size: int, processes: int, slowdown: float, threshold: float,
                 json_path: Path | None) -> None:  # fmt: skip
    from click.core import ParameterSource

    from benchmarks.count_gate_proof import run_count_proof
    from benchmarks.errors import BenchError
    from benchmarks.rounds import Settings
    from benchmarks.suite import BenchRequest
    from hsnet.devices.remote import parse_device
    from hsnet.toolbox.atomic import atomic_write_json

    device = parse_device(remote)
    if not device.emulated:
        raise BenchError(f"--remote {remote}: the instruction-count gate's proof runs on an emulated device (qemu:...)")
    given = {n: ctx.get_parameter_source(n) != ParameterSource.DEFAULT for n in ("models", "runtimes", "slowdown",
                                                                                "threshold")}  # fmt: skip
    req = BenchRequest(
        models=_csv(models) if given["models"] else ("hsnet",),
        runtimes=_csv(runtimes) if given["runtimes"] else ("onnxruntime", "tflite"),
        precisions=_csv(precisions),
        input_size=input_size,
        settings=Settings(processes=processes),
        arch="aarch64",  # the emulated device's family
    )
    out = run_count_proof(req, device, pairs=pairs, slowdown=slowdown if given["slowdown"] else 0.03,
                          threshold=threshold if given["threshold"] else 0.01,
                          log=lambda s: click.echo(s, err=True))  # fmt: skip
    click.echo(f"{out['device']}: false alarms {out['false_alarms']}/{out['aa_comparisons']}, caught "
               f"{out['caught']}/{out['slowdown_comparisons']} (+{100 * out['slowdown']:.0f} % injected, gate "
               f"threshold {100 * out['threshold']:.0f} %)")  # fmt: skip
    if json_path:
        atomic_write_json(json_path, out)


@bench.command("training-speed")
@click.option("--models", default=None, help="Comma-separated names [default: HSNet and the Table 4 baselines].")
@click.option("--input-size", type=click.IntRange(min=8, max=4096), default=32, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1, max=4096), default=128, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads [torch's default].")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Measured steps per round.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench"), show_default=True)
@user_errors
def training_speed_cmd(models: str | None, input_size: int, batch_size: int, threads: int | None, rounds: int,
                       steps: int, out: Path) -> None:  # fmt: skip
    """Training images/s (NCHW and channels-last) in interleaved rounds; writes JSON and Markdown under --out."""
    import torch

    from benchmarks.training_speed import DEFAULT_MODELS, write_training_speed
    from hsnet.registry import model_info
    from hsnet.toolbox.atomic import check_writable_dir

    names = list(_csv(models)) if models else list(DEFAULT_MODELS)
    for name in names:
        model_info(name)  # an unknown name fails before any work, with close matches
    check_writable_dir(out, what="--out folder")
    if threads is not None:
        torch.set_num_threads(threads)
    table, stem = write_training_speed(names, input_size=input_size, batch_size=batch_size, rounds=rounds,
                                       steps=steps, out=out)  # fmt: skip
    click.echo(table)
    click.echo(f"wrote {stem}.json and {stem}.md")


@bench.command("export-speed")
@click.option("--model", default="hsnet", show_default=True, help="Registered model name.")
@click.option("--input-size", type=click.IntRange(8, 4096), default=224, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=15, show_default=True)
@click.option("--iters", type=click.IntRange(1), default=20, show_default=True, help="Calls per engine and round.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def export_speed_cmd(model: str, input_size: int, rounds: int, iters: int, threads: int, as_json: bool) -> None:
    """Latency of the deployed ONNX graph against PyTorch eager and a plain torch.onnx.export, interleaved."""
    from benchmarks.export_speed import benchmark_export
    from hsnet.registry import model_info

    model_info(model)
    result = benchmark_export(model, input_size=input_size, rounds=rounds, iters=iters, threads=threads)
    if as_json:
        emit_json(result)
        return
    c = result["context"]
    click.echo(f"{model}, input {c['input']}, batch 1, {c['threads']} thread(s), fp32; torch {c['torch']}, "
               f"onnxruntime {c['onnxruntime']}; {c['machine']}")  # fmt: skip
    click.echo(f"{'engine':10} {'median ms':>10} {'p25':>8} {'p75':>8} {'min':>8}")
    for name, s in result["engines"].items():
        click.echo(f"{name:10} {s['median_ms']:10.2f} {s['p25_ms']:8.2f} {s['p75_ms']:8.2f} {s['min_ms']:8.2f}")
    r = result["ratios"]
    click.echo(f"exported / eager = {r['exported_over_eager']:.2f}x; exported / naive = "
               f"{r['exported_over_naive']:.2f}x ({r['exported_faster_than_naive_pct']:.0f} % faster)")  # fmt: skip
    t = result["tuning"]
    click.echo(f"tuned: naive / tuned = {r['naive_over_tuned']:.2f}x, exported / tuned = "
               f"{r['exported_over_tuned']:.2f}x ({t['kept']} of {len(t['layers'])} grouped convolutions "
               f"re-grouped, max abs {t['max_abs']:.1e})")  # fmt: skip
    for layer in t["layers"]:
        if layer["groups_after"] != layer["groups_before"]:
            click.echo(f"  {layer['name']} {layer['shape']}: {layer['groups_before']} -> {layer['groups_after']} "
                       f"groups, x{layer['gain']:.2f} alone")  # fmt: skip
