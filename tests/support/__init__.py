"""Helpers shared by the tests: servers in background threads, artifact builders, clients."""
