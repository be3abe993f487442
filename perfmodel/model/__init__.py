"""What is served: the model's shape from its config (shape), its checkpoint (checkpoint) and precision."""
