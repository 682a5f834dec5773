"""Benchmarks: each script measures against an anchor taken in the same run."""
