"""perfmodel: analytical + simulated performance model of vLLM inference."""
