"""Which requirements.txt lines pip may see (moorage.sandbox.pip): refusals name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.errors import RequirementsError
from moorage.sandbox.pip import check_lines, local_paths, logical_lines, operator_paths, pip_environment

ACCEPTED = [
    "requests",
    "requests==2.31.0",
    "torch>=2,<3",
    "Pillow ~= 10.0",
    "foo[bar,baz]>=1.2 ; python_version >= '3.8'",
    "zope.interface",
    "a_b-c.d===1.0",
    "numpy==1.26.4 --hash=sha256:0123456789abcdef",
    "numpy==1.26.4 \\\n    --hash=sha256:0123456789abcdef",
    "   # only a comment",
    "requests  # pinned later",
]

REFUSED = [
    ("./evilpkg", "not a package name"),
    ("../evil", "not a package name"),
    ("/opt/evil", "not a package name"),
    ("file:///opt/evil", "not a package name"),
    ("evil @ https://example.com/evil.whl", "not a package name"),
    ("evil@file:///tmp/x", "not a package name"),
    ("git+https://example.com/evil.git", "not a package name"),
    ("https://example.com/evil-1.0.tar.gz", "not a package name"),
    ("evil-1.0.tar.gz", "not a package name"),
    ("evil-1.0-py3-none-any.whl", "not a package name"),
    ("--index-url http://127.0.0.1:18997/pip-index-ssrf/", "an option line"),
    ("-i http://127.0.0.1/", "an option line"),
    ("--extra-index-url http://10.0.0.1/", "an option line"),
    ("--find-links /tmp", "an option line"),
    ("-f /tmp", "an option line"),
    ("--trusted-host example.com", "an option line"),
    ("-r /etc/hostname", "an option line"),
    ("--requirement=/etc/hostname", "an option line"),
    ("-c constraints.txt", "an option line"),
    ("-e .", "an option line"),
    ("--editable ./x", "an option line"),
    ("--no-index", "an option line"),
    ("requests; platform_release == 'https://x'", "marker carries a URL"),
]


@pytest.mark.parametrize("line", ACCEPTED)
def test_index_requirements_are_accepted(line: str) -> None:
    check_lines(f"{line}\n", "code/requirements.txt")


@pytest.mark.parametrize(("line", "why"), REFUSED)
def test_options_paths_and_urls_are_refused_naming_the_line(line: str, why: str) -> None:
    with pytest.raises(RequirementsError) as caught:
        check_lines(f"# first\nrequests\n{line}\n", "code/requirements.txt")

    assert caught.value.message.startswith(f"code/requirements.txt line 3 is refused: {line!r} is ")
    assert why in caught.value.message
    assert "MOORAGE_PIP_TRUST_REQUIREMENTS=true" in caught.value.message


def test_a_continued_option_is_refused_at_its_first_line() -> None:
    with pytest.raises(RequirementsError) as caught:
        check_lines("requests\n--index-url \\\n  http://127.0.0.1/\n", "code/requirements.txt")

    assert "line 2 is refused: '--index-url    http://127.0.0.1/'" in caught.value.message


def test_logical_lines_drop_comments_and_join_continuations() -> None:
    text = "a==1 # x\n\n#c\nb \\\n>=2\nc\\"
    assert list(logical_lines(text)) == [(1, "a==1"), (4, "b  >=2"), (6, "c")]


def test_local_paths_are_the_existing_paths_a_trusted_file_names(tmp_path: Path) -> None:
    (tmp_path / "vendored").mkdir()
    (tmp_path / "wheels").mkdir()
    text = "".join(
        f"{line}\n" for line in ("./vendored", f"--find-links={tmp_path / 'wheels'}", "requests", "./missing")
    )

    assert sorted(set(local_paths(text, tmp_path))) == [str(tmp_path / "vendored"), str(tmp_path / "wheels")]


def test_pip_gets_no_aws_or_moorage_variable_and_a_scratch_home(tmp_path: Path) -> None:
    environ = {
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SESSION_TOKEN": "t",
        "AWS_PROFILE": "p",
        "MOORAGE_DATA_DIR": "/data",
        "PIP_INDEX_URL": "https://index.example/simple",
        "PATH": "/usr/bin",
        "HOME": "/root",
    }

    env = pip_environment(environ, home=tmp_path / "home", tmp=tmp_path)

    assert [key for key in env if key.startswith("MOORAGE_")] == []
    assert sorted(key for key in env if key.startswith("AWS_")) == [
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ]
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path)
    assert env["PIP_INDEX_URL"] == "https://index.example/simple"
    assert env["XDG_CONFIG_HOME"] == "/root/.config"  # the operator's own pip.conf still applies


def test_operator_paths_come_from_pip_variables_and_config_files(tmp_path: Path) -> None:
    wheels, index = tmp_path / "wheels", tmp_path / "index"
    wheels.mkdir()
    index.mkdir()
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nextra-index-url = file://{index} https://example.com/simple\n")

    found = operator_paths(
        {"PIP_FIND_LINKS": str(wheels), "PIP_CONFIG_FILE": str(config), "HOME": str(tmp_path)}
    )

    assert {str(wheels), str(index), str(config)} <= set(found)
    assert "https://example.com/simple" not in found
