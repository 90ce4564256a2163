"""The domain core: pod -> Slurm job script, Slurm job + control files -> pod status. No I/O."""
