"""The engine side: vLLM's engine arguments (args) and each release's rules and defaults (releases)."""
