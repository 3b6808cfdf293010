"""Benchmarks: latency, throughput, memory and scale against references (python -m bench)."""
