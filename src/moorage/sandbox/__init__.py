"""Confining model code with the kernel's own mechanisms (Landlock, capabilities, no_new_privs).

Workers, Ray actors and pip runs call `confine` before any model code runs; the server and fork
server call `harden_server` at start; `probe` says what the kernel offers (docs/security.md).
"""

from moorage.sandbox.policy import Confinement, SandboxPolicy, SandboxStatus, confine, system_read_paths
from moorage.sandbox.probe import at_start, banner_line, harden_server, probe

__all__ = [
    "Confinement",
    "SandboxPolicy",
    "SandboxStatus",
    "at_start",
    "banner_line",
    "confine",
    "harden_server",
    "probe",
    "system_read_paths",
]
