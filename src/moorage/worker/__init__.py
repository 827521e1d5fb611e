"""One worker process (plain blocking code), the fork server that starts workers, and the wire protocol.

No asyncio and no sqlite3 in the worker itself; the server-side protocol codec is shared.
"""
