"""requirements.txt is model input: which of its lines pip may see, and pip's sandbox.

A model's requirements.txt is written by whoever may deploy, not by the operator. Option lines
(`--index-url`, `-r /etc/hostname`, `-e`, `--find-links` …), local paths (an in-tree PEP 517
backend runs code at resolve time) and direct URLs (SSRF past netguard) are refused, naming the line,
unless MOORAGE_PIP_TRUST_REQUIREMENTS is set (security probe 2, rows 42–44). What remains are package
names with extras, version specifiers, markers and `--hash` pins, resolved against the index the
operator configured (PIP_* variables, pip.conf). pip itself then runs confined like a worker.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from moorage.errors import RequirementsError
from moorage.sandbox.policy import SandboxPolicy, system_read_paths
from moorage.settings import env_bool

__all__ = [
    "check_lines",
    "local_paths",
    "logical_lines",
    "operator_paths",
    "pip_environment",
    "pip_policy",
    "trusted",
]

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_SPECIFIER = re.compile(
    rf"^{_NAME}\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?"
    rf"\s*(?:\(?\s*{_VERSION}(?:\s*,\s*{_VERSION})*\s*\)?)?\s*(?:;(?P<marker>.*))?$"
)
# pip installs a bare name that ends like an archive from the file of that name, when one exists.
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tgz|tbz|txz|tlz|tar\.gz|tar\.bz2|tar\.xz|tar\.lz)\b", re.IGNORECASE)
_HASH = re.compile(r"\s+--hash[=\s]\s*[A-Za-z0-9]+:[0-9a-fA-F]+")


def trusted(environ: Mapping[str, str]) -> bool:
    """MOORAGE_PIP_TRUST_REQUIREMENTS (settings.ArtifactPolicy.pip_trust_requirements)."""
    return env_bool(environ, "MOORAGE_PIP_TRUST_REQUIREMENTS", False)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, content) of each logical line, as pip reads them: comments and
    backslash continuations removed."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        joined = " ".join([*pending, line]).strip()
        pending = []
        if joined:
            yield start, joined
    if pending and " ".join(pending).strip():
        yield start, " ".join(pending).strip()


def _refusal(line: str) -> str | None:
    if line.startswith("-"):
        return "an option line (it could change the index, read server files or install from a path)"
    requirement = _HASH.sub("", line).strip()
    match = _SPECIFIER.match(requirement)
    if match is None or _ARCHIVE.search(requirement.split(";", 1)[0]):
        return "not a package name with a version specifier (a local path, a URL or a direct reference)"
    marker = match.group("marker") or ""
    if "://" in marker or "@" in marker:
        return "a requirement whose marker carries a URL"
    return None


def check_lines(text: str, source: str) -> None:
    """Refuse, naming the first offending line, anything but index requirements."""
    for number, line in logical_lines(text):
        why = _refusal(line)
        if why is not None:
            raise RequirementsError(
                f"{source} line {number} is refused: {line!r} is {why}. A model's requirements.txt may only "
                "name packages from the index the operator configured (name, extras, version specifiers, "
                "markers, --hash); an operator who trusts every model's requirements can allow options, "
                "paths and URLs with MOORAGE_PIP_TRUST_REQUIREMENTS=true."
            )


def local_paths(text: str, base: Path) -> list[str]:
    """Existing local paths a trusted requirements file names (pip builds those in place)."""
    found: list[str] = []
    for _, line in logical_lines(text):
        for token in re.split(r"[\s=]+", line):
            candidate = token[len("file://") :] if token.startswith("file://") else token
            if not candidate or candidate.startswith("-"):
                continue
            path = (base / candidate).resolve() if not os.path.isabs(candidate) else Path(candidate)
            if (candidate.startswith((".", "/")) or token.startswith("file:")) and path.exists():
                found.append(str(path))
    return found


def _user_config_home(environ: Mapping[str, str]) -> str:
    return environ.get("XDG_CONFIG_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".config"
    )


def _config_files(environ: Mapping[str, str]) -> list[str]:
    """pip's configuration files on Linux, as pip looks them up (site, user, virtualenv, PIP_CONFIG_FILE)."""
    dirs = (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
    files = [os.path.join(d, "pip", "pip.conf") for d in dirs if d]
    files += ["/etc/pip.conf", os.path.join(_user_config_home(environ), "pip", "pip.conf")]
    files += [os.path.join(sys.prefix, "pip.conf"), environ.get("PIP_CONFIG_FILE", "")]
    return [path for path in files if path and os.path.isfile(path)]


def operator_paths(environ: Mapping[str, str]) -> list[str]:
    """What the operator's pip configuration reads from disk: its files, and the local paths and
    file:// URLs in PIP_* variables and pip.conf (find-links, extra index, certificates, constraints)."""
    files = _config_files(environ)
    values = [value for key, value in environ.items() if key.startswith("PIP_")]
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        values += [value for section in parser.sections() for value in parser[section].values()]
    found = set(files)
    for value in values:
        for token in value.split():
            candidate = token[len("file://") :] if token.startswith("file://") else token
            if os.path.isabs(candidate) and os.path.exists(candidate):
                found.add(candidate)
    return sorted(found)


def pip_environment(environ: Mapping[str, str], *, home: Path, tmp: Path) -> dict[str, str]:
    """pip's environment: the server's minus every AWS_* and MOORAGE_* variable, a scratch HOME.

    PIP_* variables stay, and XDG_CONFIG_HOME keeps pointing at the server user's configuration:
    both are the operator's index settings, which requirements.txt itself may not change.
    """
    env = {key: value for key, value in environ.items() if not key.startswith(("AWS_", "MOORAGE_"))}
    env.update(
        {
            "XDG_CONFIG_HOME": _user_config_home(environ),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def pip_policy(
    environ: Mapping[str, str], *, read_only: list[str], read_write: list[str]
) -> SandboxPolicy | None:
    """The policy pip runs under (like a worker's), or None when MOORAGE_SANDBOX=off."""
    if environ.get("MOORAGE_SANDBOX", "auto").strip() == "off":
        return None
    return SandboxPolicy(
        read_only=(*read_only, *operator_paths(environ), *system_read_paths()), read_write=tuple(read_write)
    )
