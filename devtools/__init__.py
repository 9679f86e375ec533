"""Helpers the tests and the benchmarks share: never shipped, never imported by the package."""
