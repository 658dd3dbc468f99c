"""Isolated execution and measurement of untrusted code."""
from pathlib import Path

HARNESS = Path(__file__).resolve().with_name("harness.py")
