"""CoreML target: the exporter and artifact (:mod:`.target`), the numpy ML Program evaluator that runs its
artifacts on Linux (:mod:`.mil`), and the survey of the zoo through both (:mod:`.survey`)."""

from deploy.targets.coreml.target import CoreMLArtifact, CoreMLExporter

__all__ = ["CoreMLArtifact", "CoreMLExporter"]
