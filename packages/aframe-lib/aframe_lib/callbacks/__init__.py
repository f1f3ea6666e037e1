"""Lightning callbacks shared by aframe models."""

from .export import ExportModel

__all__ = ["ExportModel"]
