"""HTTP edges: the control plane, the runtime, the container routes, auth and error rendering.

Async code only; no torch and no sqlite3 here (the store is reached through `moorage.control`).
"""
