"""Both sides of the timing and result protocol: the runner (workload), the child-side harness with its result encoding,
the comparison of results, and the statistics of the speed decision."""
from pathlib import Path

HARNESS = Path(__file__).resolve().with_name("harness.py")  # run by path in the child: stdlib only
