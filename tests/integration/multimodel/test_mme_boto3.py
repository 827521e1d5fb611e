"""Multi-model endpoints with unchanged clients: boto3's TargetModel routing, SageMaker's errors, the LRU
budget, in-flight calls that are never unloaded, failed loads retried, the 60 s ModelNotReadyException
(MOORAGE_MME_READY_WAIT shortens it here), per-model requirements and a shared default handler; the
SageMaker SDK 2.x's MultiDataModel journey (configured only through the environment, as in
docs/sagemaker-sdk.md) and moorage's CLI. One server for the module, at most two models per instance.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from moorage.examples.builders import pack
from support.gates import Gate
from support.hosting import FAST, deploy, pack_fault_handler, unique
from support.model_trees import serving, tree_of
from support.multi_model import (
    HANDLER,
    OPERATIONS,
    archive,
    call,
    call_until_loaded,
    create_mme,
    loaded_counts,
    spare_counts,
    tiny_wheel,
)
from support.servers import REGION, RunningServer, http_get

pytestmark = pytest.mark.slow

READY_WAIT_S = 4
BUDGET = 48 * 1024 * 1024  # bytes of models per instance (a tiny model's worker holds about 10 MiB)
ROLE = "arn:aws:iam::000000000000:role/moorage-tests"


def landlock_abi() -> int:
    """The kernel's Landlock ABI, asked directly (the test must not depend on the code it checks)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), 1)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    links = tmp_path_factory.mktemp("wheels")
    tiny_wheel(links)
    env = {
        "MOORAGE_MME_MAX_MODELS": "2",
        "MOORAGE_MME_SPREAD_AFTER": "2",  # a model with two calls in flight is loaded on another instance
        "MOORAGE_MME_MEMORY_BYTES": str(BUDGET),
        "MOORAGE_MME_READY_WAIT": str(READY_WAIT_S),
        # Nothing shared in /tmp: each model's worker reads only its own tree (and the Python, system).
        "MOORAGE_SANDBOX_WRITABLE": "",
        # code/requirements.txt names a package of the operator's local index; pip runs offline.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(links),
    }
    yield from serving(tmp_path_factory, env)


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> tuple[Any, Any, Any]:
    return server.client("sagemaker"), server.client("sagemaker-runtime"), server.client("s3")


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.close()


def upload(s3: Any, bucket: str, key: str, path: Path) -> None:
    s3.upload_file(str(path), bucket, key)


def lone_model(clients: tuple[Any, Any, Any], path: Path, key: str) -> str:
    """A multi-model endpoint on a fresh bucket holding one archive at `key`; the endpoint's name."""
    sm, _, s3 = clients
    bucket = unique("mme")
    s3.create_bucket(Bucket=bucket)
    upload(s3, bucket, key, path)
    return create_mme(sm, f"s3://{bucket}/")


def target_call(runtime: Any, endpoint: str, target: str) -> Any:
    """InvokeEndpoint with TargetModel and an empty JSON body, for error_of."""
    return lambda: runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", TargetModel=target)


def error_of(call_it: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as raised:
        call_it()
    error = raised.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"], error["Error"]["Message"]


@pytest.fixture(scope="module")
def four(clients: tuple[Any, Any, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An endpoint on a prefix with four models (sum, max, negate, count); (endpoint, bucket)."""
    sm, _, s3 = clients
    root = tmp_path_factory.mktemp("four")
    bucket = unique("mme")
    s3.create_bucket(Bucket=bucket)
    for name, operation in (("a", "sum"), ("b", "max"), ("c", "negate"), ("d", "count")):
        key = f"models/{name}.tar.gz" if name != "d" else "models/team/d.tar.gz"
        upload(s3, bucket, key, archive(root, name, operation=operation))
    return create_mme(sm, f"s3://{bucket}/models/"), bucket


def test_each_target_model_answers_with_its_own_handler(
    clients: tuple[Any, Any, Any], four: tuple[str, str]
) -> None:
    sm, runtime, _ = clients
    endpoint, bucket = four
    assert call(runtime, endpoint, "a.tar.gz", x=[1, 5, 2])["answer"] == 8
    assert call(runtime, endpoint, "b.tar.gz", x=[1, 5, 2])["answer"] == 5
    assert call(runtime, endpoint, "team/d.tar.gz", x=[1, 5, 2])["answer"] == 3
    config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    model = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"]
    container = sm.describe_model(ModelName=model)["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["ModelDataUrl"] == f"s3://{bucket}/models/"
    assert container["MultiModelConfig"] == {"ModelCacheSetting": "Enabled"}


def test_lru_keeps_the_budget_and_every_answer_right(
    server: RunningServer, clients: tuple[Any, Any, Any], four: tuple[str, str]
) -> None:
    _, runtime, _ = clients
    endpoint, _ = four
    expected = {"a.tar.gz": 6, "b.tar.gz": 3, "c.tar.gz": [-1, -2, -3], "team/d.tar.gz": 3}
    for _round in range(2):
        for target, answer in expected.items():
            assert call(runtime, endpoint, target, x=[1, 2, 3])["answer"] == answer
            status, text = http_get(server.url + "/metrics")
            assert status == 200
            assert loaded_counts(text.decode(), endpoint) and max(loaded_counts(text.decode(), endpoint)) <= 2
    metrics = http_get(server.url + "/metrics")[1].decode()
    hits = [line for line in metrics.splitlines() if line.startswith("sagemaker_ModelCacheHit_count{")]
    assert any(f'EndpointName="{endpoint}"' in line for line in hits)
    assert "sagemaker_ModelLoadingTime_microseconds_count" in metrics
    assert "sagemaker_ModelUnloadingTime_microseconds_count" in metrics


def test_sagemakers_errors(clients: tuple[Any, Any, Any], four: tuple[str, str], tmp_path: Path) -> None:
    sm, runtime, _ = clients
    endpoint, bucket = four

    def plain(**extra: Any) -> Any:
        return lambda: runtime.invoke_endpoint(
            EndpointName=endpoint, Body=b"{}", ContentType="application/json", **extra
        )

    status, code, message = error_of(plain())
    assert (status, code) == (400, "ValidationError")
    assert "is missing a target model header" in message and message.startswith("Request ")
    status, code, message = error_of(plain(TargetModel="nope.tar.gz"))
    assert (status, code) == (400, "ValidationError")
    assert message.startswith(f"Failed to download model data(bucket: {bucket}, key: models/nope.tar.gz).")
    for escape in ("../other/a.tar.gz", "team/../../a.tar.gz", "/a.tar.gz"):
        status, code, message = error_of(plain(TargetModel=escape))
        assert (status, code) == (400, "ValidationError")
        assert "is not a path under the endpoint's ModelDataUrl prefix" in message
    single = deploy(sm, pack_fault_handler(tmp_path))
    status, code, message = error_of(
        lambda: runtime.invoke_endpoint(EndpointName=single, Body=b"{}", TargetModel="a.tar.gz")
    )
    assert (status, code, message) == (
        400,
        "ValidationError",
        f"Endpoint {single} is not a multi-model endpoint and does not support target model header.",
    )


def test_a_local_directory_is_a_prefix_and_a_link_out_of_it_is_refused(
    clients: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    sm, runtime, _ = clients
    prefix, outside = tmp_path / "models", tmp_path / "outside"
    prefix.mkdir()
    outside.mkdir()
    archive(tmp_path, "local", operation="max").rename(prefix / "local.tar.gz")
    archive(tmp_path, "elsewhere").rename(outside / "elsewhere.tar.gz")
    (prefix / "link.tar.gz").symlink_to(outside / "elsewhere.tar.gz")
    endpoint = create_mme(sm, f"file://{prefix}")
    assert call(runtime, endpoint, "local.tar.gz", x=[4, 9])["answer"] == 9
    status, code, message = error_of(
        lambda: runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", TargetModel="link.tar.gz")
    )
    assert (status, code) == (400, "ValidationError")
    assert "resolves outside the endpoint's model directory" in message


def test_a_failing_model_fn_is_retried_on_the_next_call(
    server: RunningServer, clients: tuple[Any, Any, Any], gate: Gate, tmp_path: Path
) -> None:
    runtime = clients[1]
    endpoint = lone_model(clients, archive(tmp_path, "f", fail_unless=gate.url("f-loads")), "f.tar.gz")
    status, code, message = error_of(target_call(runtime, endpoint, "f.tar.gz"))
    assert (status, code) == (424, "ModelError")
    assert "Failed to load TargetModel f.tar.gz" in message and "its gate is closed" in message
    assert "TargetModel f.tar.gz did not load" in server.log()
    gate.open("f-loads")
    assert call(runtime, endpoint, "f.tar.gz", x=[2, 2])["answer"] == 4


def test_a_slow_load_answers_model_not_ready_and_goes_on_loading(
    clients: tuple[Any, Any, Any], gate: Gate, tmp_path: Path
) -> None:
    runtime = clients[1]
    endpoint = lone_model(clients, archive(tmp_path, "slow", load_gate=gate.url("slow-load")), "slow.tar.gz")
    status, code, message = error_of(target_call(runtime, endpoint, "slow.tar.gz"))
    assert (status, code) == (429, "ModelNotReadyException")
    assert "slow.tar.gz" in message and "retry" in message
    assert gate.arrived["slow-load"].is_set()
    gate.open("slow-load")
    assert call(runtime, endpoint, "slow.tar.gz", x=[4])["answer"] == 4
    assert gate.calls["slow-load"] == 1  # the load went on: model_fn ran once


def test_a_model_with_a_call_in_flight_is_never_unloaded(
    clients: tuple[Any, Any, Any], gate: Gate, tmp_path: Path
) -> None:
    sm, runtime, s3 = clients
    bucket = unique("mme")
    s3.create_bucket(Bucket=bucket)
    for name in ("p", "q", "r"):
        upload(s3, bucket, f"{name}.tar.gz", archive(tmp_path, name))
    endpoint = create_mme(sm, f"s3://{bucket}/")
    first = call(runtime, endpoint, "p.tar.gz", x=[1])
    answers: list[dict[str, Any]] = []
    held = threading.Thread(
        target=lambda: answers.append(call(runtime, endpoint, "p.tar.gz", x=[7], hold=gate.url("p-held")))
    )
    held.start()
    assert gate.arrived["p-held"].wait(60)
    # q and r need room: with two models per instance, q is loaded, then unloaded for r; p stays.
    assert call(runtime, endpoint, "q.tar.gz", x=[1])["answer"] == 1
    assert call(runtime, endpoint, "r.tar.gz", x=[1])["answer"] == 1
    gate.open("p-held")
    held.join(60)
    assert answers and answers[0]["answer"] == 7 and answers[0]["pid"] == first["pid"]
    assert call(runtime, endpoint, "p.tar.gz", x=[1])["pid"] == first["pid"]  # never reloaded


def test_requirements_are_per_model_and_a_shared_handler_serves_archives_without_code(
    clients: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    sm, runtime, s3 = clients
    bucket = unique("mme")
    s3.create_bucket(Bucket=bucket)
    needs = "__import__('moorage_mme_dep').VALUE"
    found = "__import__('importlib.util').util.find_spec('moorage_mme_dep') is not None"
    upload(
        s3,
        bucket,
        "with.tar.gz",
        archive(tmp_path, "with", extra=needs, requirements="moorage-mme-dep\n"),
    )
    upload(s3, bucket, "without.tar.gz", archive(tmp_path, "without", extra=found))
    upload(s3, bucket, "bare.tar.gz", archive(tmp_path, "bare", code=False))
    shared = tmp_path / "shared"
    (shared / "code").mkdir(parents=True)
    (shared / "code" / "inference.py").write_text(
        HANDLER.replace("OPERATION", OPERATIONS["count"]).replace("EXTRA", "'the shared handler'")
    )
    sourcedir = pack(shared / "code", tmp_path / "sourcedir.tar.gz")
    endpoint = create_mme(
        sm,
        f"s3://{bucket}/",
        env={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"file://{sourcedir}"},
    )
    # pip may take longer than the ready wait: the client retries ModelNotReadyException
    assert call_until_loaded(runtime, endpoint, "with.tar.gz", x=[1])["extra"] == "from the dependency"
    assert call(runtime, endpoint, "without.tar.gz", x=[1])["extra"] is False
    bare = call(runtime, endpoint, "bare.tar.gz", x=[1, 2])
    assert (bare["model"], bare["answer"], bare["extra"]) == ("bare", 2, "the shared handler")


def test_models_of_one_endpoint_never_read_each_others_files(
    server: RunningServer, clients: tuple[Any, Any, Any], four: tuple[str, str], tmp_path: Path
) -> None:
    if landlock_abi() == 0:
        pytest.skip("this kernel offers no Landlock: the sandbox cannot be checked here")
    _, runtime, s3 = clients
    endpoint, bucket = four
    secret = archive(tmp_path, "secret", token="tenant-a-secret")
    s3.upload_file(str(secret), bucket, "models/secret.tar.gz")
    peek = archive(tmp_path, "peek", extra="peek(request.get('peek'))")
    s3.upload_file(str(peek), bucket, "models/peek.tar.gz")
    assert call(runtime, endpoint, "secret.tar.gz", x=[1])["model"] == "secret"
    their_file = tree_of(server.data_dir, secret) / "config.json"
    assert "tenant-a-secret" in their_file.read_text()  # it is there, and readable to the server
    assert call(runtime, endpoint, "peek.tar.gz", peek=str(their_file))["extra"] == "PermissionError"


def metrics_of(server: RunningServer) -> str:
    return http_get(server.url + "/metrics")[1].decode()


def test_a_first_call_is_served_by_a_worker_forked_before_it(
    server: RunningServer, clients: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    """No process starts on a cold load's path: a spare forked ahead takes the model (and is confined
    to it, as test_models_of_one_endpoint_never_read_each_others_files checks); another is forked after."""
    _, runtime, _ = clients
    endpoint = lone_model(clients, archive(tmp_path, "early", operation="max"), "early.tar.gz")
    deadline = time.monotonic() + 30
    while spare_counts(metrics_of(server), endpoint) != [1]:
        assert time.monotonic() < deadline, "no spare worker was forked for the instance"
        time.sleep(0.05)
    before = {child.pid for child in psutil.Process(server.process.pid).children(recursive=True)}
    answer = call(runtime, endpoint, "early.tar.gz", x=[4, 9])
    assert (answer["model"], answer["answer"]) == ("early", 9)
    assert answer["pid"] in before
    while spare_counts(metrics_of(server), endpoint) != [1]:
        assert time.monotonic() < deadline, "no spare worker replaced the one the model took"
        time.sleep(0.05)


def test_a_model_busy_on_its_instance_is_loaded_on_another(
    server: RunningServer, clients: tuple[Any, Any, Any], gate: Gate, tmp_path: Path
) -> None:
    sm, runtime, s3 = clients
    bucket = unique("mme")
    s3.create_bucket(Bucket=bucket)
    upload(s3, bucket, "hot.tar.gz", archive(tmp_path, "hot", operation="sum"))
    endpoint = create_mme(sm, f"s3://{bucket}/", instances=2)
    first = call(runtime, endpoint, "hot.tar.gz", x=[1])
    assert sorted(loaded_counts(metrics_of(server), endpoint)) == [0, 1]
    answers: list[dict[str, Any]] = []
    held: list[threading.Thread] = []

    def hold_one() -> None:
        """One more call on the model, held at the gate (the first) or queued behind it (the others)."""
        n = 10 * (len(held) + 1)
        thread = threading.Thread(
            target=lambda: answers.append(call(runtime, endpoint, "hot.tar.gz", x=[n], hold=gate.url("hot")))
        )
        held.append(thread)
        thread.start()

    hold_one()
    assert gate.arrived["hot"].wait(60)
    hold_one()
    # Whichever of the last two the server routes second finds two in flight on the only copy (routing
    # and counting a call happen in one step of its event loop): the model is loaded on the other too.
    hold_one()
    deadline = time.monotonic() + 60
    while sorted(loaded_counts(metrics_of(server), endpoint)) != [1, 1]:
        assert time.monotonic() < deadline, "the busy model was not loaded on the other instance"
        time.sleep(0.05)
    second = call(runtime, endpoint, "hot.tar.gz", x=[2, 3])  # answered while the first copy is held
    assert second["answer"] == 5 and second["pid"] != first["pid"]
    gate.open("hot")
    for thread in held:
        thread.join(60)
    assert sorted(answer["answer"] for answer in answers) == [10 * (k + 1) for k in range(len(held))]


def test_a_model_larger_than_the_budget_is_refused_clearly(
    clients: tuple[Any, Any, Any], four: tuple[str, str], tmp_path: Path
) -> None:
    _, runtime, s3 = clients
    endpoint, bucket = four
    # the extracted tree alone is larger than the budget
    s3.upload_file(
        str(archive(tmp_path, "huge", weights_bytes=BUDGET + 1024 * 1024)), bucket, "models/huge.tar.gz"
    )
    with pytest.raises(ClientError) as raised:
        call(runtime, endpoint, "huge.tar.gz", x=[1])
    error = raised.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (400, "ValidationError")
    message = error["Error"]["Message"]
    assert message.startswith(
        "TargetModel huge.tar.gz needs at least 49.0 MiB of memory (its extracted files)"
    )
    assert "more than the 48.0 MiB an instance of this endpoint keeps for models" in message
    assert "use a larger instance type or raise MOORAGE_MME_MEMORY_BYTES" in message


def test_cache_disabled_unloads_after_each_call_and_a_new_version_is_served(
    server: RunningServer, clients: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    sm, runtime, s3 = clients
    bucket = unique("mme")
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(archive(tmp_path, "v1", operation="sum")), bucket, "m/model.tar.gz")
    endpoint = create_mme(sm, f"s3://{bucket}/m/", cache="Disabled")
    first = call(runtime, endpoint, "model.tar.gz", x=[2, 3])
    assert (first["model"], first["answer"]) == ("v1", 5)
    deadline = time.monotonic() + 30
    while loaded_counts(http_get(server.url + "/metrics")[1].decode(), endpoint) != [0]:
        assert time.monotonic() < deadline, "the model stayed loaded with ModelCacheSetting Disabled"
        time.sleep(0.05)
    s3.upload_file(str(archive(tmp_path, "v2", operation="max")), bucket, "m/model.tar.gz")
    second = call(runtime, endpoint, "model.tar.gz", x=[2, 3])
    assert (second["model"], second["answer"]) == ("v2", 3)
    assert second["pid"] != first["pid"]


def test_multi_data_model_journey(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL_SAGEMAKER": server.url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": server.url,
        "AWS_ENDPOINT_URL_S3": str(server.s3_url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }.items():
        monkeypatch.setenv(name, value)
    from sagemaker.base_deserializers import JSONDeserializer
    from sagemaker.base_serializers import JSONSerializer
    from sagemaker.multidatamodel import MultiDataModel
    from sagemaker.pytorch.model import PyTorchModel
    from sagemaker.session import Session

    bucket = unique("sdk-mme")
    server.client("s3").create_bucket(Bucket=bucket)
    session = Session(default_bucket=bucket)
    prefix = f"s3://{bucket}/mme/"
    template = PyTorchModel(
        model_data=None,  # type: ignore[arg-type]  # MultiDataModel takes only its image and environment
        role=ROLE,
        framework_version="2.1",
        py_version="py310",
        sagemaker_session=session,
    )
    mdm = MultiDataModel(
        name=unique("mdm"), model_data_prefix=prefix, model=template, sagemaker_session=session
    )
    for name, operation in (("alpha", "sum"), ("beta", "max"), ("gamma", "negate")):
        mdm.add_model(str(archive(tmp_path, name, operation=operation)), f"{name}.tar.gz")  # type: ignore[no-untyped-call]
    listed = sorted(mdm.list_models())  # type: ignore[no-untyped-call]
    assert listed == ["alpha.tar.gz", "beta.tar.gz", "gamma.tar.gz"]
    endpoint = unique("sdk-mme-ep")
    predictor = mdm.deploy(  # type: ignore[no-untyped-call]
        initial_instance_count=1,
        instance_type="ml.m5.large",
        endpoint_name=endpoint,
        serializer=JSONSerializer(),  # type: ignore[no-untyped-call]
        deserializer=JSONDeserializer(),  # type: ignore[no-untyped-call]
        wait=False,  # the SDK's own wait polls every 30 s; boto3's waiter polls faster
    )
    session.sagemaker_client.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST)
    answers = {
        target: predictor.predict({"x": [3, 1, 2]}, target_model=target)["answer"]
        for target in ("alpha.tar.gz", "beta.tar.gz", "gamma.tar.gz")
    }
    assert answers == {"alpha.tar.gz": 6, "beta.tar.gz": 3, "gamma.tar.gz": [-3, -1, -2]}
    mdm.add_model(str(archive(tmp_path, "delta", operation="count")), "late/delta.tar.gz")  # type: ignore[no-untyped-call]
    assert predictor.predict({"x": [3, 1]}, target_model="late/delta.tar.gz")["answer"] == 2

    # moorage's CLI: the same call with --target-model, and what is loaded where.
    cli = [sys.executable, "-m", "moorage"]
    invoke = [
        "invoke",
        endpoint,
        "--url",
        server.url,
        "--json",
        '{"x": [5, 7]}',
        "--target-model",
        "beta.tar.gz",
    ]
    answer = run_cli(cli + invoke)
    assert json.loads(answer)["answer"] == 7
    listing = json.loads(run_cli([*cli, "models", endpoint, "--url", server.url, "--output", "json"]))
    loaded = sorted(entry["TargetModel"] for entry in listing["LoadedModels"])
    assert loaded == ["beta.tar.gz", "late/delta.tar.gz"]  # two per instance here: the last two called
    assert all(entry["SizeBytes"] > 0 and entry["LoadSeconds"] > 0 for entry in listing["LoadedModels"])
    assert len({entry["InstanceId"] for entry in listing["LoadedModels"]}) == 1
    table = run_cli([*cli, "models", endpoint, "--url", server.url]).splitlines()
    assert table[0].split() == ["INSTANCE", "TARGET", "MODEL", "MEMORY", "LOAD", "DOWNLOAD", "LOADED"]
    assert sorted(line.split()[1] for line in table[1:]) == ["beta.tar.gz", "late/delta.tar.gz"]


def run_cli(arguments: list[str]) -> str:
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
