"""Annotation readers, the one sample type, video frame sampling and the synthetic benchmark.

``from timegrpo.data import load_annotations`` reads any supported annotation file (see
:mod:`timegrpo.data.formats`); :mod:`timegrpo.data.video` samples frames for the Qwen processors (imports
torch when used); :mod:`timegrpo.data.synthetic` writes the synthetic mp4 benchmark.
"""

from timegrpo.data.anomalies import AnnotationError, AnomalyReport
from timegrpo.data.formats import READERS, detect_format, load_annotations, load_durations
from timegrpo.data.schema import Sample

__all__ = ["READERS", "AnnotationError", "AnomalyReport", "Sample", "detect_format", "load_annotations",
           "load_durations"]
