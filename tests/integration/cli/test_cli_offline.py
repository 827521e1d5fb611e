"""The `moorage` command where no server is needed, or none answers: help, `package`, usage errors,
and the message that says which server could not be reached and how to point elsewhere."""

from __future__ import annotations

import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.cli import main
from moorage.examples.builders import SEED_HANDLER
from support.cli import Cli

CLIENT_COMMANDS = ("package", "upload", "deploy", "invoke", "endpoints", "describe", "update", "delete")


def members(tarball: Path) -> dict[str, bytes | None]:
    with tarfile.open(tarball, "r:gz") as archive:
        found: dict[str, bytes | None] = {}
        for member in archive:
            data = archive.extractfile(member) if member.isfile() else None
            found[member.name] = data.read() if data else None
    return found


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_top_level_help_lists_every_client_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listing = capsys.readouterr().out
    for command in (*CLIENT_COMMANDS, "logs", "serve"):
        assert f"\n    {command} " in listing, command


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_each_command_explains_itself_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: moorage {command} ")
    examples = text.split("examples:\n", 1)[1]
    assert f"  moorage {command} " in examples  # an example of this very command, indented as written


def test_package_builds_the_sagemaker_layout(offline_cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "__pycache__").mkdir(parents=True)
    (source / "__pycache__" / "serve.cpython-311.pyc").write_bytes(b"\x00")
    (source / "serve.py").write_text("from helpers import answer\n")
    (source / "helpers.py").write_text("answer = 42\n")
    (source / "requirements.txt").write_text("from-the-source-dir\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "vocab.json").write_text("{}")

    result = offline_cli.run(
        "package",
        "--model-file",
        "model.pt",
        "--model-file",
        "vocab.json",
        "--source-dir",
        "src",
        "--entry-point",
        "serve.py",
        "--requirements",
        "requirements.txt",
        "-o",
        "out/model.tar.gz",
        cwd=tmp_path,
    )

    assert result.code == 0, result
    found = members(tmp_path / "out" / "model.tar.gz")
    assert found == {
        "model.pt": b"weights",
        "vocab.json": b"{}",
        "code": None,
        "code/helpers.py": b"answer = 42\n",
        "code/serve.py": b"from helpers import answer\n",
        "code/requirements.txt": b"numpy\n",  # --requirements wins over the source dir's own
    }
    assert "--env SAGEMAKER_PROGRAM=serve.py" in result.stdout  # not inference.py: say how to run it
    assert not list((tmp_path / "out").glob(".*partial"))


def test_package_the_seed_and_refuse_to_overwrite(offline_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "model_0.pth").write_bytes(b"seed weights")
    args = ("package", "--model-file", "model_0.pth", "--entry-point", str(SEED_HANDLER), "--output", "json")

    first = offline_cli.run(*args, cwd=tmp_path)
    again = offline_cli.run(*args, cwd=tmp_path)
    forced = offline_cli.run(*args, "--force", cwd=tmp_path)

    assert first.code == 0, first
    assert '"Members": [\n    "model_0.pth",\n    "code",\n    "code/inference.py"\n  ]' in first.stdout
    assert members(tmp_path / "model.tar.gz") == {
        "model_0.pth": b"seed weights",
        "code": None,
        "code/inference.py": SEED_HANDLER.read_bytes(),
    }
    assert again.code == 1
    assert "model.tar.gz already exists; pass --force to overwrite it" in again.stderr
    assert forced.code == 0, forced


def test_package_names_what_is_missing(offline_cli: Cli, tmp_path: Path) -> None:
    nothing = offline_cli.run("package", cwd=tmp_path)
    no_file = offline_cli.run("package", "--model-file", "absent.pth", cwd=tmp_path)

    assert nothing.code == 2
    assert "nothing to package: give --model-file, --entry-point or --source-dir" in nothing.stderr
    assert no_file.code == 1
    assert "--model-file absent.pth does not exist" in no_file.stderr
    assert not (tmp_path / "model.tar.gz").exists()


def test_an_unreachable_server_is_named_with_the_way_to_point_elsewhere(
    offline_cli: Cli, refusing_url: str
) -> None:
    from_env = offline_cli.run("endpoints", env={"MOORAGE_URL": refusing_url})
    from_flag = offline_cli.run("describe", "anything", "--url", refusing_url)

    assert from_env.code == 1
    assert from_env.stdout == ""
    assert f"cannot reach a moorage server at {refusing_url} (from MOORAGE_URL)" in from_env.stderr
    assert "--url URL or MOORAGE_URL=URL" in from_env.stderr
    assert "Traceback" not in from_env.stderr
    assert from_flag.code == 1
    assert f"at {refusing_url} (from --url)" in from_flag.stderr


def test_bad_arguments_exit_2_before_any_server_is_contacted(
    tmp_path: Path, refusing_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Argument checks are pure logic: run in this process, pointed at a server that cannot answer,
    # so a check that came after connecting would fail with the wrong message.
    monkeypatch.setenv("MOORAGE_URL", refusing_url)
    upload = tmp_path / "f"
    upload.write_text("x")
    cases = {
        ("invoke", "ep"): "one of the arguments - --json --body-file --input is required",
        ("invoke", "ep", "--json", "{not json"): "--json is not valid JSON",
        ("invoke", "ep", "stray"): "unexpected argument 'stray'",
        ("update", "ep"): "nothing to update: give --model-data, --weights or --instance-count",
        ("update", "ep", "--weights", "blue"): "each item must be VARIANT=WEIGHT",
        ("update", "ep", "--entry-point", "x.py"): "--entry-point: only with --model-data",
        ("deploy", "m.tar.gz", "--name", "ep", "--env", "NOEQUALS"): "--env 'NOEQUALS' is not KEY=VALUE",
        ("deploy", "m.tar.gz"): "the following arguments are required: --name",
        ("upload", str(upload), "https://example.com/x"): "is not an s3://bucket/key URL",
        ("no-such-command",): "invalid choice: 'no-such-command'",
    }
    for args, message in cases.items():
        try:
            code = main(list(args))
        except SystemExit as exited:  # argparse's own usage errors
            code = int(exited.code or 0)
        stderr = capsys.readouterr().err
        assert (code, message in stderr) == (2, True), f"{args}: exit {code}: {stderr}"


def test_the_small_parsers_and_formats() -> None:
    import datetime

    from moorage.commands._output import age, human_size, table
    from moorage.commands.invoke import content_type_for
    from moorage.commands.update import parse_weights
    from moorage.commands.upload import parse_destination

    now = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
    ago = [age(now - datetime.timedelta(seconds=s), now) for s in (0, 59, 60, 3599, 7200, 86400 * 3)]
    assert ago == ["0s", "59s", "1m", "59m", "2h", "3d"]
    assert [human_size(n) for n in (0, 999, 2900, 97_400_000, 3 * 10**12)] == [
        "0 B",
        "999 B",
        "2.9 kB",
        "97.4 MB",
        "3000.0 GB",
    ]
    assert table(["A", "BB"], [["xyz", "1"], ["q", "22"]]) == "A    BB\nxyz  1\nq    22"
    assert parse_weights("blue=1, green=0.5") == {"blue": 1.0, "green": 0.5}
    assert parse_destination("s3://b/models/", "m.tar.gz") == ("b", "models/m.tar.gz")
    assert parse_destination("s3://b", "m.tar.gz") == ("b", "m.tar.gz")
    assert parse_destination("s3://b/exact/key.tgz", "m.tar.gz") == ("b", "exact/key.tgz")
    assert [content_type_for(Path(n)) for n in ("a.json", "a.NPY", "a.csv", "a.jpg", "a.bin")] == [
        "application/json",
        "application/x-npy",
        "text/csv",
        "image/jpeg",
        "application/octet-stream",
    ]
