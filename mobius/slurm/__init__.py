"""Slurm adapter: client commands, submission, status polling and a private test cluster."""
