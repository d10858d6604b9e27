"""Latency tests: algorithmic (an impulse offline), round trip (a sweep through a loopback), the
compute bench, and their plots."""
