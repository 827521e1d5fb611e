"""One module per `moorage` command group; each exposes `register(commands)`.

`register` adds its sub-parser(s) and sets `func` to a function `(args) -> int` that does the work
and returns the exit code. cli.py collects them and is the only place that maps errors to exit codes.
"""
