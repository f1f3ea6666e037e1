"""aframe-train: aframe's concrete detectors (LightningModules, architectures, datasets) and
the ``aframe-train`` command line."""

__version__ = "0.1.0"
