"""Fan-out benchmark harness: load generator, textbook reference server, runner.

Not part of the application: nothing under ``bench/`` is imported by the
project. docs/benchmarks.md describes the scenarios and the figures.
"""
