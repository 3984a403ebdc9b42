"""Fault injection for the test suite: a TCP fault proxy and brokers that die and come back."""
