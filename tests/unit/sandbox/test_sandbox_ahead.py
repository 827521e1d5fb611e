"""A ruleset built ahead (`Confinement`, what a spare worker builds while it waits for a model) restricts
nothing until `confine` applies it, and then enforces exactly what `confine` in one go does."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.sandbox import Confinement, SandboxPolicy, _landlock, confine, system_read_paths

pytestmark = pytest.mark.skipif(_landlock.abi_version() == 0, reason="this kernel offers no Landlock")

Attempts = dict[str, Callable[[], object]]


def outcomes(attempts: Attempts) -> dict[str, str]:
    results = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            results[name] = "ok"
        except OSError as exc:
            results[name] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return results


def in_child(policy: SandboxPolicy, attempts: Attempts, *, ahead: bool) -> dict[str, dict[str, str]]:
    """Fork; in the child, optionally build the ruleset ahead (and try everything then), confine, try
    everything again. {"ahead": ..., "confined": ...}: 'ok' or the errno name of each attempt."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the child)
        os.close(read)
        results: dict[str, dict[str, str]] = {}
        try:
            built = Confinement() if ahead else None
            if built is not None:
                results["ahead"] = outcomes(attempts)
            confine(policy, built)
            results["confined"] = outcomes(attempts)
        finally:
            os.write(write, json.dumps(results).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found: dict[str, dict[str, str]] = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    return found


def test_a_ruleset_built_ahead_restricts_nothing_until_applied_then_exactly_what_confine_does(
    tmp_path: Path,
) -> None:
    mine, theirs, scratch = tmp_path / "mine", tmp_path / "theirs", tmp_path / "scratch"
    for folder in (mine, theirs, scratch):
        folder.mkdir()
    (mine / "weights").write_text("mine")
    (theirs / "weights").write_text("theirs")
    policy = SandboxPolicy(read_only=(str(mine), *system_read_paths()), read_write=(str(scratch),))
    attempts: Attempts = {
        "read own model": lambda: (mine / "weights").read_text(),
        "read another model": lambda: (theirs / "weights").read_text(),
        "write own model": lambda: (mine / "weights").write_text("x"),
        "write scratch": lambda: (scratch / "f").write_text("x"),
        "read the system": lambda: Path("/usr").stat() and os.listdir("/usr"),
        "write /dev/null": lambda: Path("/dev/null").write_text("x"),
    }

    in_two_steps = in_child(policy, attempts, ahead=True)
    in_one_go = in_child(policy, attempts, ahead=False)

    assert in_two_steps["ahead"] == dict.fromkeys(attempts, "ok")  # built, not yet applied
    assert in_two_steps["confined"] == in_one_go["confined"]
    assert in_one_go["confined"] == {
        "read own model": "ok",
        "read another model": "EACCES",
        "write own model": "EACCES",
        "write scratch": "ok",
        "read the system": "ok",
        "write /dev/null": "ok",
    }
