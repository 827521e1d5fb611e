"""moorage's benchmark harness: the served model against the same handler called in-process.

`bench/run.py` is the one command (`make bench`); `frontends.py` and `ipc.py` measure the choices the
data path was built on. Nothing here is imported by moorage or asserted on by the tests.
"""
