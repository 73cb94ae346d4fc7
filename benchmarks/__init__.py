"""Throughput and latency benchmarks (commands, not tests); see the README's Performance section."""
