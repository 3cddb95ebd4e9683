"""Benchmarks: run as modules, e.g. ``python -m bench.label_throughput --quick``."""
