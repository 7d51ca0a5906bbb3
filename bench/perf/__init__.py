"""Kernel speed on a GPU against the measured ceilings and PyTorch's SDPA backends
(`python -m bench.perf --out DIR`, `table.py`)."""
