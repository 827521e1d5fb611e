"""The data path inside the server: routing, worker pools, timeouts, supervision.

Never imports torch and never runs user code.
"""
