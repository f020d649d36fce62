"""``run_bench``: the library function behind ``hsnet bench`` -- validate, build artifacts, measure, assemble.

It returns data (a :class:`benchmarks.schema.BenchResult`); printing, JSON, Markdown, plots and the gate are
separate consumers.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.artifacts import RUNTIME_TARGETS, Built, ModelSpec, build_artifacts, describe_artifact, source_digest
from benchmarks.environment import collect_environment
from benchmarks.errors import BenchError
from benchmarks.rounds import Config, Settings, measure
from benchmarks.schema import BenchResult, Row
from hsnet.errors import HSNetError
from hsnet.toolbox.machine import host_arch
from hsnet.toolbox.progress import log as _log

__all__ = [
    "ALL_RUNTIMES",
    "DEFAULT_MODELS",
    "DEFAULT_RUNTIMES",
    "DEVICES",
    "PRECISIONS",
    "BenchRequest",
    "plan_configs",
    "run_bench",
    "validate_request",
]

#: HSNet and the paper's lightweight baselines. SqueezeNet is 1.0: the SqueezeNet paper's network, which the
#: HSNet paper's (CIFAR) SqueezeNet follows; VGG16 and ResNet50 are measured on request (--models).
DEFAULT_MODELS = (
    "hsnet",
    "ghostnet_100",
    "mobilenetv1_100",
    "mobilenetv2_100",
    "squeezenet1_0",
    "shufflenetv1_g3_100",
    "shufflenetv2_100",
)
ALL_RUNTIMES = ("torch", "onnxruntime", "tflite", "coreml")
DEFAULT_RUNTIMES = ("torch", "onnxruntime", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu",)
#: Precisions each runtime's artifacts come in (deploy's exporters; torch measures its fp32 program).
RUNTIME_PRECISIONS = {
    "torch": ("fp32",),
    "onnxruntime": ("fp32", "fp16", "int8"),
    "tflite": ("fp32", "fp16", "int8"),
    "coreml": ("fp32", "fp16"),
}
#: Default classifier width: the HSNet paper's Table 4 setting (CIFAR-100 classes at 224x224), for every model.
DEFAULT_NUM_CLASSES = 100


@dataclass(frozen=True)
class BenchRequest:
    """What to measure.

    Attributes:
        models: registry names (artifacts built by deploy into the cache).
        runtimes: subset of :data:`ALL_RUNTIMES`.
        precisions: subset of :data:`PRECISIONS`; a runtime without one gives a ``skipped`` row.
        threads: thread counts, each measured separately.
        input_size: square input side.
        batch: batch size of one inference.
        num_classes: classifier width of every model (None: each model's own).
        checkpoints: hsnet checkpoints; each replaces the random weights of the model it holds and gives its
            accuracy to the plot.
        artifacts: artifact files measured as given (runtime from the suffix), in addition to ``models``.
        user_models: the user's own networks, ``module:callable`` or ``file.py:callable`` specs returning an
            ``nn.Module``; exported by :func:`deploy.convert` and measured beside the zoo.
        device: only ``cpu``.
        settings: how to measure.
        cache: artifact cache folder (None: ``$HSNET_CACHE`` or ``~/.cache/hsnet/artifacts``).
        arch: the CPU family the artifacts are built for (deploy's ``--arch``; None: this machine's); a
            ``--remote`` run builds for each device's own.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    precisions: tuple[str, ...] = ("fp32",)
    threads: tuple[int, ...] = (1,)
    input_size: int = 224
    batch: int = 1
    num_classes: int | None = DEFAULT_NUM_CLASSES
    checkpoints: tuple[Path, ...] = ()
    artifacts: tuple[Path, ...] = ()
    user_models: tuple[str, ...] = ()
    device: str = "cpu"
    settings: Settings = field(default_factory=Settings)
    cache: Path | None = None
    arch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "runtimes": list(self.runtimes),
            "precisions": list(self.precisions),
            "threads": list(self.threads),
            "input_size": self.input_size,
            "batch": self.batch,
            "num_classes": self.num_classes,
            "checkpoints": [str(p) for p in self.checkpoints],
            "artifacts": [str(p) for p in self.artifacts],
            "user_models": list(self.user_models),
            "device": self.device,
            "arch": self.arch or host_arch(),
        }


def _one_of(kind: str, values: Sequence[str], valid: Sequence[str]) -> None:
    for v in values:
        if v not in valid:
            raise BenchError(f"unknown {kind} {v!r}; valid: {', '.join(valid)}")


def validate_request(req: BenchRequest) -> None:
    """Check every option before any work.

    Raises:
        BenchError: unknown device, runtime, precision or model (the message lists the valid values), or a
            non-positive thread count, batch or input size.
    """
    _one_of("device", [req.device], DEVICES)
    _one_of("runtime", req.runtimes, ALL_RUNTIMES)
    _one_of("precision", req.precisions, PRECISIONS)
    from hsnet.registry import model_info

    for name in req.models:
        model_info(name)  # an unknown name fails with close matches
    if not req.models and not req.artifacts and not req.user_models:
        raise BenchError("nothing to measure: give --models, --model module:callable or --artifact")
    if not req.runtimes and req.models:
        raise BenchError(f"no runtime given; valid: {', '.join(ALL_RUNTIMES)}")
    if not req.precisions:
        raise BenchError(f"no precision given; valid: {', '.join(PRECISIONS)}")
    for name, values in (("threads", req.threads), ("batch", (req.batch,)), ("input size", (req.input_size,))):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise BenchError(f"{name} must be positive integers, got {', '.join(map(str, values)) or 'none'}")


def _checkpoint_info(paths: Sequence[Path]) -> dict[str, tuple[Path, float | None]]:
    """Model name -> (checkpoint, top-1 accuracy in % when the checkpoint records one).

    The accuracy is the test top-1 of the epoch whose weights the checkpoint holds (``test_top1``, as
    ``hsnet train`` records it), falling back to ``top1`` and ``best_top1``.
    """
    from hsnet.checkpoint import load_checkpoint

    out: dict[str, tuple[Path, float | None]] = {}
    for p in paths:
        ckpt = load_checkpoint(p)
        metrics = ckpt.metrics or {}
        acc = next(
            (metrics[k] for k in ("test_top1", "top1", "best_top1") if isinstance(metrics.get(k), (int, float))), None
        )
        if ckpt.model in out:
            raise BenchError(f"two checkpoints for {ckpt.model}: {out[ckpt.model][0]} and {p}")
        out[ckpt.model] = (Path(p), None if acc is None else float(acc))
    return out


def _model_figures(model: str, num_classes: int | None, input_size: int) -> tuple[int, int]:
    """(parameters, MACs per image) of the model as defined (not fused), exactly as ``hsnet profile`` counts."""
    from hsnet.registry import model_info

    info = model_info(model)
    if (num_classes in (None, info.num_classes)) and input_size == info.input_size:
        return info.params, info.macs  # declared figures are tested equal to the profiler's
    from hsnet.profiling import profile_model
    from hsnet.registry import create_model

    prof = profile_model(create_model(model, num_classes=num_classes), input_size)
    return prof.params, prof.macs


def plan_configs(req: BenchRequest, log: Callable[[str], None] = _log) -> list[Config]:
    """Every configuration of the request, its artifact built (or found in the cache); rows not measurable here
    (precision a runtime lacks, failed export, CoreML off macOS) come back with their ``skipped``/``failed``
    status."""
    ckpts = _checkpoint_info(req.checkpoints)
    for model, (path, _) in ckpts.items():
        if model not in req.models:
            raise BenchError(f"checkpoint {path} holds {model}, which is not among the models to measure")
    configs: list[Config] = []
    for model in req.models:
        ckpt, acc = ckpts.get(model, (None, None))
        spec = ModelSpec(model, req.input_size, req.batch, None if ckpt else req.num_classes, ckpt,
                         arch=req.arch or host_arch())  # fmt: skip
        try:
            params, macs = _model_figures(model, spec.num_classes, req.input_size)
        except HSNetError as e:
            raise BenchError(str(e)) from None
        configs += _spec_configs(spec, req, params, macs, acc)
    for text in req.user_models:
        configs += _user_model_configs(text, req)
    for path in req.artifacts:
        configs += _given_artifact(Path(path), req)
    return configs


def _user_model_configs(text: str, req: BenchRequest) -> list[Config]:
    """Rows of the user's own network: built through :func:`deploy.convert` into the cache, like the zoo's."""
    from deploy.prepare import state_sha256
    from deploy.user_model import load_user_model
    from hsnet.profiling import profile_model
    from hsnet.profiling.counter import input_channels

    module, name = load_user_model(text)
    try:
        prof = profile_model(module, req.input_size)
    except Exception as e:  # noqa: BLE001 - the user's forward may raise anything
        raise BenchError(f"--model {text} cannot run on a {req.input_size}x{req.input_size} input ({e})") from None
    key = f"{text} {state_sha256(module)} {source_digest(module)}"
    spec = ModelSpec(name, req.input_size, req.batch, None, None, user=module, user_key=key,
                     in_chans=input_channels(module), arch=req.arch or host_arch())  # fmt: skip
    return _spec_configs(spec, req, prof.params, prof.macs, None)


def _spec_configs(spec: ModelSpec, req: BenchRequest, params: int, macs: int, acc: float | None) -> list[Config]:
    """Build (or find) ``spec``'s artifacts for every runtime and precision; one config per row and thread count."""
    configs: list[Config] = []
    model = spec.model
    wanted = [(RUNTIME_TARGETS[rt], p) for rt in req.runtimes for p in req.precisions if p in RUNTIME_PRECISIONS[rt]]
    built = build_artifacts(spec, wanted, cache=req.cache)
    for rt in req.runtimes:
        for p in req.precisions:
            base = Row(
                model=model,
                runtime=rt,
                precision=p,
                threads=0,
                batch=req.batch,
                input_size=req.input_size,
                num_classes=spec.num_classes,
                params=params,
                macs=macs,
                accuracy_top1=acc,
            )
            art = built.get((RUNTIME_TARGETS[rt], p))
            if p not in RUNTIME_PRECISIONS[rt]:
                base.status = f"skipped: {rt} artifacts come in {', '.join(RUNTIME_PRECISIONS[rt])}"
            elif isinstance(art, HSNetError):
                base.status = _build_status(art)
            elif art is not None:
                _attach(base, art)
                if rt == "coreml" and platform.system() != "Darwin":
                    base.status = "skipped: CoreML prediction needs macOS"
            # The program's recorded NCHW shape (a checkpoint may change the channels); the runner needs it.
            shape = art.input_shape if isinstance(art, Built) and art.input_shape else None
            for t in req.threads:
                row = Row(**{**base.__dict__, "threads": t})
                configs.append(Config(row, art.path if isinstance(art, Built) else None, shape))
    return configs


def _build_status(e: HSNetError) -> str:
    from deploy.errors import MissingDependencyError

    if isinstance(e, MissingDependencyError):
        return f"skipped: install hsnet[{e.extra}]"
    return f"failed: export: {' '.join(str(e).split())[:300]}"


def _attach(row: Row, art: Built) -> None:
    row.artifact = art.path.name
    row.artifact_bytes = art.size
    row.artifact_sha256 = art.sha256
    row.parity = art.parity
    row.weights = art.weights


def _given_artifact(path: Path, req: BenchRequest) -> list[Config]:
    info = describe_artifact(path)
    out = []
    for t in req.threads:
        row = Row(
            model=info["model"],
            runtime=info["runtime"],
            precision=info["precision"],
            threads=t,
            batch=info["batch"] or req.batch,
            input_size=info["input_size"] or req.input_size,
            params=info["params"],
            macs=info["macs"],
            artifact=path.name,
            artifact_bytes=info["size"],
            artifact_sha256=info["sha256"],
            parity=info["parity"],
            weights=info["weights"],
        )
        if row.runtime == "coreml" and platform.system() != "Darwin":
            row.status = "skipped: CoreML prediction needs macOS"
        shape = (row.batch, 3, row.input_size, row.input_size)
        out.append(Config(row, path, shape, infer_input=info["input_size"] is None and row.runtime != "torch"))
    return out


def run_bench(
    req: BenchRequest,
    *,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = _log,
) -> BenchResult:
    """Validate ``req``, build or find the artifacts, measure every configuration, and return the result.

    Args:
        req: what to measure.
        env: extra environment for the measuring workers (tests use it to hide a runtime).
        log: where progress lines go.

    Raises:
        BenchError: an invalid request (before any work).
    """
    validate_request(req)
    start = time.perf_counter()
    environment = collect_environment()
    configs = plan_configs(req, log)
    m = measure(configs, req.settings, env=env, log=log)
    environment["loadavg_end"] = collect_environment().get("loadavg")
    settings = {**req.settings.to_dict(), "rounds_run": m.rounds, "request": req.to_dict()}
    return BenchResult(
        rows=m.rows,
        environment=environment,
        settings=settings,
        gemm=m.gemm,
        reference=m.reference,
        harness=m.harness,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(time.perf_counter() - start, 1),
    )
