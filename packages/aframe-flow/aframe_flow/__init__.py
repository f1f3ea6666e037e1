"""aframe-flow: law tasks that run aframe's data generation, training and tuning locally, inside
Apptainer images, or on Ray clusters in Kubernetes."""

__version__ = "0.1.0"
