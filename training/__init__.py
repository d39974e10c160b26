"""Training of routers and LoRA on agent traces (data, training loop, evaluation)."""
