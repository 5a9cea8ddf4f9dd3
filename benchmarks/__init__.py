"""thyrocam's benchmark suite: ``python -m benchmarks`` (``make bench``) prints one table.

Each module measures one thing side by side in one run and returns table rows;
timings are printed, never asserted (the test suite has no wall-clock checks).
"""
