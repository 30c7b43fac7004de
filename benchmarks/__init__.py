"""Latency/throughput/memory harness behind `icnseg bench`."""
