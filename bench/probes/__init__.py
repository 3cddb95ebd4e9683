"""Minute-long probes that choose between designs before a long training run (see docs/glip-nano.md)."""
