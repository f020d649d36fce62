"""Stage 3: onnxsim. A failure is recorded and reported (manifest, report, CLI), never swallowed: the
pipeline then continues with the checked, unsimplified graph, and says so."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.deps import require
from hsnet.toolbox.atomic import atomic_path

__all__ = ["SimplifyResult", "simplify_onnx", "simplify_failure"]


@dataclass(frozen=True)
class SimplifyResult:
    """What onnxsim did.

    Attributes:
        ok: onnxsim succeeded and its output is the graph used from here on.
        nodes_before: node count of the exported graph.
        nodes_after: node count of the graph used from here on (``nodes_before`` when onnxsim failed).
        error: ``"<ExceptionType>: <first line>"`` when onnxsim failed, else None.
        seconds: wall time of the attempt.
        version: onnxsim version.
    """

    ok: bool
    nodes_before: int
    nodes_after: int
    error: str | None
    seconds: float
    version: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people."""
        if self.ok:
            return f"onnxsim {self.version}: {self.nodes_before} -> {self.nodes_after} nodes ({self.seconds:.1f} s)"
        return (
            f"onnxsim {self.version} FAILED ({self.error}); continuing with the unsimplified graph "
            f"({self.nodes_before} nodes)"
        )


def simplify_failure(error: BaseException, nodes: int, seconds: float = 0.0) -> SimplifyResult:
    """The record of a failed simplification: ``error`` is what onnxsim (or the check after it) raised."""
    from hsnet.toolbox.machine import package_version

    first = (str(error).strip().splitlines() or [""])[0][:300]
    return SimplifyResult(
        ok=False,
        nodes_before=nodes,
        nodes_after=nodes,
        error=f"{type(error).__name__}: {first}".rstrip(": "),
        seconds=seconds,
        version=package_version("onnxsim"),
    )


def simplify_onnx(src: Path, dst: Path) -> SimplifyResult:
    """Simplify ``src`` into ``dst`` with onnxsim, keeping the metadata; on failure copy ``src`` to ``dst``.

    The simplified graph must pass ``onnx.checker`` (full check); if it does not, that counts as a failure too.
    KeyboardInterrupt is never caught.
    """
    onnx = require("onnx", "onnx", "ONNX simplification")
    onnxsim = require("onnxsim", "onnx", "ONNX simplification")
    from deploy.onnx_export import check_onnx, set_metadata
    from hsnet.toolbox.machine import package_version

    model = onnx.load(str(src))
    before = len(model.graph.node)
    metadata = {p.key: p.value for p in model.metadata_props}
    start = time.perf_counter()
    try:
        simplified, check_ok = onnxsim.simplify(model)
        if not check_ok:
            raise RuntimeError("onnxsim's own check found the simplified graph computes something else")
        set_metadata(simplified, metadata)  # onnxsim keeps them today; do not depend on it
        with atomic_path(dst) as tmp:
            onnx.save(simplified, str(tmp))
        check_onnx(dst)
    except Exception as e:  # noqa: BLE001 - any failure of the optional stage is recorded, never hidden
        Path(dst).unlink(missing_ok=True)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return simplify_failure(e, before, time.perf_counter() - start)
    return SimplifyResult(
        ok=True,
        nodes_before=before,
        nodes_after=len(simplified.graph.node),
        error=None,
        seconds=time.perf_counter() - start,
        version=package_version("onnxsim"),
    )
