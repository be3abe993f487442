"""Run real vLLM workloads, store results, fit and check the performance model."""
