"""Benchmark runs over task files: tasks, their environments, batch, evaluate and executors."""
