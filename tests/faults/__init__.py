"""Fault injection for the test suite: a TCP fault proxy and a broker whose data survives SIGKILL."""
