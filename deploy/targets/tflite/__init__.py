"""TFLite target: the exporter and artifact (:mod:`.target`) and their helpers, one job per module.

- :mod:`.onnx2tf` and :mod:`.onnx2tf_worker`: the onnx2tf route, run offline in a worker process;
- :mod:`.litert`: the litert-torch route (PyTorch straight to TFLite);
- :mod:`.rewrites`: model rewrites the TFLite converters need;
- :mod:`.flatbuffer`: hsnet's metadata inside the flatbuffer.
"""

from deploy.targets.tflite.target import ONNX2TF_TESTED, TFLiteArtifact, TFLiteExporter, convert_all

__all__ = ["ONNX2TF_TESTED", "TFLiteArtifact", "TFLiteExporter", "convert_all"]
