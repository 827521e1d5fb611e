"""`confine` against the real kernel, in forked children: what a confined process may still touch."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.sandbox import SandboxPolicy, _landlock, banner_line, confine, probe, system_read_paths
from moorage.sandbox import policy as sandbox_policy

needs_landlock = pytest.mark.skipif(_landlock.abi_version() == 0, reason="this kernel offers no Landlock")


def in_confined_child(policy: SandboxPolicy, attempts: dict[str, Callable[[], object]]) -> dict[str, str]:
    """Fork, confine the child, run each attempt there; 'ok' or the errno name of each."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the child)
        os.close(read)
        results = {}
        try:
            confine(policy)
            for name, attempt in attempts.items():
                try:
                    attempt()
                    results[name] = "ok"
                except OSError as exc:
                    results[name] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        finally:
            os.write(write, json.dumps(results).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        outcome: dict[str, str] = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    return outcome


@needs_landlock
def test_a_confined_child_reads_and_writes_only_what_its_policy_grants(tmp_path: Path) -> None:
    mine, scratch, outside = tmp_path / "model", tmp_path / "scratch", tmp_path / "data"
    for folder in (mine, scratch, outside):
        folder.mkdir()
    (mine / "inference.py").write_text("code")
    (outside / "credentials.json").write_text("secret")
    policy = SandboxPolicy(read_only=(str(mine), *system_read_paths()), read_write=(str(scratch),))

    results = in_confined_child(
        policy,
        {
            "read own model": lambda: (mine / "inference.py").read_text(),
            "write own model": lambda: (mine / "inference.py").write_text("x"),
            "write scratch": lambda: (scratch / "f").write_text("x"),
            "read outside": lambda: (outside / "credentials.json").read_text(),
            "list outside": lambda: os.listdir(outside),
            "write /dev/null": lambda: Path(os.devnull).write_text("x"),
            "read parent environ": lambda: Path(f"/proc/{os.getppid()}/environ").read_bytes(),
        },
    )

    assert results == {
        "read own model": "ok",
        "write own model": "EACCES",
        "write scratch": "ok",
        "read outside": "EACCES",
        "list outside": "EACCES",
        "write /dev/null": "ok",
        "read parent environ": "EACCES",
    }
    assert (outside / "credentials.json").read_text() == "secret"


@needs_landlock
@pytest.mark.skipif(_landlock.abi_version() < 6, reason="signal scoping needs Landlock ABI 6")
def test_a_confined_child_cannot_signal_its_parent(tmp_path: Path) -> None:
    policy = SandboxPolicy(read_only=system_read_paths())

    results = in_confined_child(policy, {"signal parent": lambda: os.kill(os.getppid(), 0)})

    assert results == {"signal parent": "EPERM"}


def test_world_readable_grants_children_around_a_private_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "ssl").mkdir(parents=True)
    (etc / "ssh").mkdir()
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    (etc / "ssl" / "cert.pem").write_text("cert")
    (etc / "ssh" / "ssh_config").write_text("config")
    (etc / "ssh" / "ssh_host_ed25519_key").write_text("private")
    (etc / "shadow").write_text("root:x")
    for path in (etc, etc / "ssl", etc / "ssh"):
        path.chmod(0o755)
    for path in (etc / "hosts", etc / "ssl" / "cert.pem", etc / "ssh" / "ssh_config"):
        path.chmod(0o644)
    (etc / "ssh" / "ssh_host_ed25519_key").chmod(0o600)
    (etc / "shadow").chmod(0o640)

    granted = sandbox_policy._world_readable(str(etc))

    assert sorted(granted) == [str(etc / "hosts"), str(etc / "ssh" / "ssh_config"), str(etc / "ssl")]
    assert all(os.stat(path).st_mode & stat.S_IROTH for path in granted)


def test_the_banner_never_claims_what_is_not_there() -> None:
    off = probe("off")

    assert off["workers"] == "unconfined"
    assert banner_line(off).startswith("sandbox: NONE, workers are NOT isolated")
    assert any(line.startswith("files: MOORAGE_SANDBOX=off") for line in off["exposed"])
    assert any(line.startswith("network:") for line in probe("auto")["exposed"])
    if _landlock.abi_version() == 0:
        assert probe("auto")["workers"] == "unconfined"
    else:
        assert banner_line(probe("auto")).startswith(
            f"sandbox: workers and pip confined by Landlock ABI {_landlock.abi_version()}"
        )
