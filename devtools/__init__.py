"""Helpers the tests, the benchmarks and the studies share: never shipped, never imported by the package."""
