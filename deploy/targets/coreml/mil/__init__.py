"""A numpy reference evaluator of CoreML ML Programs, so that CoreML parity can be proven where CoreML cannot run.

``load_program(path).run({"image": x})`` reads an ``.mlpackage`` (its protobuf through ``coremltools.proto``, its
weights with :mod:`deploy.targets.coreml.mil.blob`) and executes the ``main`` function operation by operation
(:mod:`deploy.targets.coreml.mil.ops`). An operation it does not implement raises
:class:`deploy.errors.UnsupportedOperationError` naming the operation type and its output.
"""

from deploy.targets.coreml.mil.ops import supported_ops
from deploy.targets.coreml.mil.program import FeatureInfo, MLProgram, Operation, TensorType, load_program, read_spec

__all__ = ["FeatureInfo", "MLProgram", "Operation", "TensorType", "load_program", "read_spec", "supported_ops"]
