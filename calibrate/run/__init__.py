"""Run real vLLM workloads: the runner, the worker process beside vLLM, the online client, SLURM jobs."""
