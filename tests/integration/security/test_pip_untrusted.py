"""code/requirements.txt as untrusted input (issue 11 item 3; security probe 2, rows 42–44).

A real `moorage serve` deploys models whose requirements.txt tries what the prober tried: an in-tree
PEP 517 backend (code at resolve time, with the server's environment), `--index-url` to a loopback
listener (SSRF past netguard) and `-r /etc/hostname` (a server-local file). The operator's own index is
a loopback listener too (PIP_INDEX_URL), which records every request pip makes.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.examples.builders import pack
from support.hosting import deploy, unique
from support.servers import RunningServer, start_server

pytestmark = pytest.mark.slow

SERVER_SECRET = "server-own-secret-DO-NOT-LEAK"

BACKEND = """
import json, os

def _attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return "denied"

def _write_marker():
    with open(os.path.join(os.environ["PROBE_DIR"], "backend-ran"), "w") as file:
        json.dump(dict(os.environ), file)

def _read_state():
    with open(os.path.join(os.environ["PROBE_DATA_DIR"], "state.sqlite3"), "rb") as file:
        file.read(16)

def get_requires_for_build_wheel(*args, **kwargs):
    result = {
        "secret in environment": "@SECRET@" in json.dumps(dict(os.environ)),
        "write outside": _attempt(_write_marker),
        "read state.sqlite3": _attempt(_read_state),
    }
    raise RuntimeError("PROBE-RESULT " + json.dumps(result, sort_keys=True))

prepare_metadata_for_build_wheel = build_wheel = get_requires_for_build_wheel
""".replace("@SECRET@", SERVER_SECRET)


class Index:
    """A loopback HTTP listener that answers 404 and remembers every path asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def index() -> Iterator[Index]:
    listener = Index()
    yield listener
    listener.close()


def serve(root: Path, env: dict[str, str]) -> RunningServer:
    data_dir = root / "data"
    probe_dir = root / "probe"
    probe_dir.mkdir()
    return start_server(
        data_dir,
        env={
            "AWS_SECRET_ACCESS_KEY": SERVER_SECRET,
            "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as "build isolation: off"
            "PROBE_DIR": str(probe_dir),
            "PROBE_DATA_DIR": str(data_dir),
            **env,
        },
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[RunningServer]:
    running = serve(tmp_path_factory.mktemp("pip"), {"PIP_INDEX_URL": f"{index.url}/operator-index/"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def trusting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = serve(
        tmp_path_factory.mktemp("pip-trusted"),
        {"PIP_NO_INDEX": "1", "MOORAGE_PIP_TRUST_REQUIREMENTS": "true"},
    )
    yield running
    running.stop()


def model_with(root: Path, requirements: str, *, evil_package: bool = False) -> Path:
    model = root / unique("model")
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (model / "code" / "requirements.txt").write_text(requirements)
    if evil_package:
        package = model / "code" / "evilpkg"
        package.mkdir()
        (package / "pyproject.toml").write_text(
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        )
        (package / "backend.py").write_text(BACKEND)
    return pack(model, root / f"{model.name}.tar.gz")


def failure_reason(server: RunningServer, tarball: Path) -> str:
    sm = server.client("sagemaker")
    name = deploy(sm, tarball, wait=False)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        described = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] == "Failed":
            return str(described["FailureReason"])
        assert described["EndpointStatus"] == "Creating", described
        time.sleep(0.25)
    raise TimeoutError(f"{name} did not fail within 180 s")


def logs(server: RunningServer) -> list[Path]:
    return [server.log_path, *(path for path in (server.data_dir / "logs").rglob("*") if path.is_file())]


def probe_dir(server: RunningServer) -> Path:
    return server.data_dir.parent / "probe"


def test_a_local_build_backend_is_refused_before_pip_runs(server: RunningServer, tmp_path: Path) -> None:
    """Row 42: `./evilpkg` with an in-tree backend ran with the server's AWS secret."""
    reason = failure_reason(server, model_with(tmp_path, "./evilpkg\n", evil_package=True))

    assert "code/requirements.txt line 1 is refused: './evilpkg'" in reason
    assert "MOORAGE_PIP_TRUST_REQUIREMENTS" in reason
    assert not (probe_dir(server) / "backend-ran").exists()


def test_a_trusted_build_backend_still_runs_sandboxed_without_secrets(
    trusting_server: RunningServer, tmp_path: Path
) -> None:
    """Row 42 with the operator's trust: pip runs the backend, confined like a worker."""
    reason = failure_reason(trusting_server, model_with(tmp_path, "./evilpkg\n", evil_package=True))

    # FailureReason keeps pip's last lines, cut to 1024 characters; the endpoint's log has them all.
    logged = "\n".join(path.read_text(errors="replace") for path in logs(trusting_server))
    assert "RuntimeError: PROBE-RESULT " in logged, reason
    result = json.loads(logged.split("RuntimeError: PROBE-RESULT ", 1)[1].splitlines()[0])
    assert result == {
        "read state.sqlite3": "denied",
        "secret in environment": False,
        "write outside": "denied",
    }
    assert SERVER_SECRET not in reason and SERVER_SECRET not in logged
    assert not (probe_dir(trusting_server) / "backend-ran").exists()


def test_an_index_url_to_loopback_is_refused_and_never_fetched(
    server: RunningServer, index: Index, tmp_path: Path
) -> None:
    """Row 43: pip fetched a loopback --index-url past netguard."""
    requirements = f"--index-url {index.url}/pip-index-ssrf/\nnot-installed-pkg-xyz==1.0\n"

    reason = failure_reason(server, model_with(tmp_path, requirements))

    assert f"code/requirements.txt line 1 is refused: '--index-url {index.url}/pip-index-ssrf/'" in reason
    assert [path for path in index.paths if "pip-index-ssrf" in path or "not-installed-pkg-xyz" in path] == []


def test_a_requirement_file_on_the_server_is_refused(
    server: RunningServer, index: Index, tmp_path: Path
) -> None:
    """Row 44: `-r /etc/hostname` made pip read a server-local file and install its content."""
    hostname = Path("/etc/hostname").read_text().strip()

    reason = failure_reason(server, model_with(tmp_path, "-r /etc/hostname\n"))

    assert "code/requirements.txt line 1 is refused: '-r /etc/hostname' is an option line" in reason
    assert [path for path in index.paths if hostname and f"/{hostname.lower()}/" in path.lower()] == []


def test_plain_requirements_still_go_to_the_operators_index(
    server: RunningServer, index: Index, tmp_path: Path
) -> None:
    """The control: a name with a version reaches pip, confined, and pip asks the configured index."""
    reason = failure_reason(server, model_with(tmp_path, "moorage-missing-pkg==1.0  # from the index\n"))

    assert "No matching distribution found for moorage-missing-pkg==1.0" in reason
    assert "/operator-index/moorage-missing-pkg/" in index.paths
