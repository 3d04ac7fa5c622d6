"""Speed benchmarks: ``python -m experiments.bench optimizer | train | jobs | latency``."""
