"""Where instances run: `local` (worker processes on this machine) or `ray` (actors on a cluster).

`ray` is imported only by `backends/ray.py`, and only when that backend is chosen.
"""
