"""Object-detection triage: a detector's boxes against the dataset's annotations (issue 13).

``triage_detections`` is the entry point; ``formats`` reads predictions, ``match`` matches boxes and types the
errors (TIDE), ``metrics`` computes COCO AP, ``errors`` finds annotation errors through the model."""
from .formats import PredictionsError
from .triage import DEFAULTS, DetectionResult, triage_detections

__all__ = ["DEFAULTS", "DetectionResult", "PredictionsError", "triage_detections"]
