"""medtl benchmarks: run with `python benchmarks/run.py` (see README.md)."""
