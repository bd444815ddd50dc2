"""A package run with ``python -m traced_pkg``."""
