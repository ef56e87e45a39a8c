"""Benchmark harness for the mailwright image (`make bench`).

The harness only reports numbers; it never asserts on timings, because a
loaded CI machine would turn a timing assertion into a flaky test.
"""
