"""Benchmarks: a deterministic data set, a loader through the service's write path, runners."""
