"""What to run for a layout: the ``vllm serve`` command (serve) and SLURM job scripts (sbatch)."""
