"""Annotation readers, the one sample type, video frame sampling and the synthetic benchmark."""

from timegrpo.data.schema import Sample

__all__ = ["Sample"]
