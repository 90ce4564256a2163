"""Mobius: a private Kubernetes inside a Slurm allocation; every pod runs as one Slurm job."""

__version__ = "0.1.0"
