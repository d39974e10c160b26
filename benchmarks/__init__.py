"""Wall-clock benchmarks of routed agent steps against the engines a user would otherwise run."""
