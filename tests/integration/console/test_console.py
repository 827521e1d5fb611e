"""The web console in a real headless Chromium, against a real `moorage serve` (no auth, loopback).

What a user does: deploy an endpoint (boto3, as a script would) and watch it turn InService on the
page; invoke it through the form and read the answer; tail its log; change its instance count;
delete it; and a page on another origin cannot drive the server through the browser. Every value the
page shows is checked against what boto3 reads from the same server.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from playwright.sync_api import Page, expect

from integration.console.browsing import LAPTOP, PHONE, console_url, screenshot
from integration.transform.conftest import (
    SCORE_HANDLER,
    Gate,
    create_model,
    keys,
    pack_handler,
    stage,
    start_job,
    wait_for_end,
)
from support.hosting import FAST, deploy, pack_fault_handler, unique, wait_for_counts
from support.servers import RunningServer, http_get, start_server, static_files, wait_until_gone

pytestmark = pytest.mark.slow


@dataclass
class Console:
    server: RunningServer
    sm: Any
    runtime: Any
    endpoint: str  # deployed by the first test, used by the next ones
    model: Path  # the fault handler's model.tar.gz (tests/support/handlers.py)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    model = pack_fault_handler(root)
    # The metric history samples the counters every half second (10 s by default) so a chart moves soon.
    server = start_server(root / "data", env={"MOORAGE_CLOUDWATCH_SAMPLE": "0.5"})
    try:
        sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
        yield Console(server, sm, runtime, unique("console"), model)
    finally:
        server.stop()
        assert not wait_until_gone(server.tag), server.log()[-3000:]


@pytest.fixture
def endpoint(console: Console) -> str:
    """The module's endpoint: deployed by the first test, which watches it start on the page; deployed
    here when a test runs without that one (`pytest -k`)."""
    try:
        console.sm.describe_endpoint(EndpointName=console.endpoint)
    except ClientError:
        deploy(console.sm, console.model, name=console.endpoint)
    return console.endpoint


def raw_get(base_url: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_an_endpoint_turns_in_service_on_the_page(console: Console, page: Page) -> None:
    page.goto(console_url(console.server))
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    deploy(console.sm, console.model, name=console.endpoint, wait=False)
    row = page.locator(f"tr[data-name='{console.endpoint}']")
    expect(row).to_be_visible()  # Creating first, then InService, without a reload
    expect(row.locator(".badge")).to_have_text("InService", timeout=90_000)
    assert console.sm.describe_endpoint(EndpointName=console.endpoint)["EndpointStatus"] == "InService"
    expect(row.locator("td.variants")).to_have_text("AllTraffic: 1, 1/1")
    screenshot(page, "endpoints")
    screenshot(page, "endpoints-phone", phone=True)


def test_the_invoke_form_shows_the_answer_latency_and_headers(
    console: Console, endpoint: str, page: Page
) -> None:
    page.goto(f"{console_url(console.server)}#/endpoints/{endpoint}")
    expect(page.locator("h1")).to_have_text(endpoint)
    page.get_by_label("Content type").fill("application/json")
    page.get_by_label("Accept").fill("application/json")
    page.get_by_label("Body").fill('{"hello": "console"}')
    page.get_by_role("button", name="Invoke").click()
    answer = page.locator(".invoke-answer")
    expect(answer).to_be_visible()
    shown = json.loads(answer.inner_text())
    direct = json.loads(
        console.runtime.invoke_endpoint(
            EndpointName=endpoint, Body=b'{"hello": "console"}', ContentType="application/json"
        )["Body"].read()
    )
    assert shown["echo"] == direct["echo"] == {"hello": "console"}
    assert shown["version"] == direct["version"] == "1"
    assert re.fullmatch(r"HTTP 200 in \d+\.\d ms", page.locator(".invoke-status").inner_text())
    headers = dict(
        zip(
            page.locator("table.headers th").all_inner_texts(),
            page.locator("table.headers td").all_inner_texts(),
            strict=True,
        )
    )
    assert headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert headers["content-type"] == "application/json"
    screenshot(page, "endpoint", full_page=True)


CONTRAST = """() => {
    const rgb = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
        const [R, G, B] = [r, g, b].map((c) => {
            c /= 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * R + 0.7152 * G + 0.0722 * B;
    };
    const background = (el) => {
        for (; el; el = el.parentElement) {
            const color = rgb(getComputedStyle(el).backgroundColor);
            if (color.length === 3 || color[3] > 0) return color.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const failures = [];
    for (const el of document.querySelectorAll("body *")) {
        const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!own || el.closest(".visually-hidden, svg, [hidden]") || !el.getClientRects().length) continue;
        const style = getComputedStyle(el);
        const fg = luminance(rgb(style.color)), bg = luminance(background(el));
        const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
        const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
        const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
        const what = `${el.tagName}.${el.className} "${el.textContent.slice(0, 30)}"`;
        if (ratio < needed) failures.push(`${what}: ${ratio.toFixed(2)}`);
    }
    return failures;
}"""


@pytest.mark.parametrize("phone", [False, True], ids=["laptop", "phone"])
def test_the_pages_have_aa_contrast_and_fit_the_width(
    console: Console, endpoint: str, page: Page, phone: bool
) -> None:
    """Every piece of text meets WCAG AA contrast, and no page scrolls sideways at a phone's width."""
    page.set_viewport_size(PHONE if phone else LAPTOP)
    for route, ready in (
        ("#/endpoints", f"tr[data-name='{endpoint}'] .badge"),
        (f"#/endpoints/{endpoint}", "h1 + span .badge"),
        (f"#/logs//aws/sagemaker/Endpoints/{endpoint}", "ol.log[data-ready]"),
        ("#/jobs", "h2"),
    ):
        page.goto(f"{console_url(console.server)}{route}")
        expect(page.locator(ready).first).to_be_visible()
        assert page.evaluate(CONTRAST) == [], route
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (route, width)


def chart_total(page: Page, title: str, column: int = 0) -> float:
    """The sum of one series of a chart, read from the table each chart carries for screen readers."""
    figure = page.locator("figure.chart-box", has_text=title)
    cells = figure.locator(f"tbody tr td:nth-of-type({column + 1})").all_inner_texts()
    return sum(float(cell) for cell in cells if cell != "–")


def test_the_metrics_chart_moves_with_traffic(console: Console, endpoint: str, page: Page) -> None:
    page.goto(f"{console_url(console.server)}#/endpoints/{endpoint}/metrics")
    expect(page.get_by_label("Variant")).to_have_value("AllTraffic")
    chart = page.locator("figure.chart-box", has_text="Invocations")
    expect(chart.locator("svg")).to_be_visible()
    before = chart_total(page, "Invocations")
    for _ in range(5):
        console.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", ContentType="application/json")
    expect(chart).to_have_attribute("data-total-0", str(int(before + 5)))
    assert chart_total(page, "Invocations") == before + 5
    assert chart.locator("polyline.series, circle.series").count() >= 1
    screenshot(page, "metrics")


def test_the_log_page_tails_new_lines(console: Console, endpoint: str, page: Page) -> None:
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    page.goto(f"{console_url(console.server)}#/logs/{group}")
    expect(page.get_by_label("Log group")).to_have_value(group)
    expect(page.locator("ol.log")).to_have_attribute("data-ready", "true")
    marker = unique("tail-marker")
    with pytest.raises(ClientError):  # the handler raises: its traceback goes to the endpoint's log
        console.runtime.invoke_endpoint(
            EndpointName=endpoint,
            Body=json.dumps({"action": "raise", "where": "predict_fn", "marker": marker}).encode(),
            ContentType="application/json",
        )
    expect(page.locator("ol.log")).to_contain_text("boom in predict_fn")
    screenshot(page, "logs")
    # Search: only the lines that hold the text, from every instance's stream.
    page.get_by_label("Live tail").uncheck()
    page.get_by_label("Search").fill("boom in predict_fn")
    page.get_by_role("button", name="Show").click()
    lines = page.locator("ol.log li .message")
    expect(lines.first).to_contain_text("boom in predict_fn")
    assert all("boom in predict_fn" in line for line in lines.all_inner_texts())


def test_changing_the_instance_count_asks_first_then_scales(
    console: Console, endpoint: str, page: Page
) -> None:
    page.goto(f"{console_url(console.server)}#/endpoints/{endpoint}")
    count = page.get_by_label("Instance count of AllTraffic")
    expect(count).to_have_value("1")
    count.fill("2")
    page.get_by_role("button", name="Apply changes").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("AllTraffic: weight 1, 2 instance(s)")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice is the default
    dialog.get_by_role("button", name="Cancel").click()
    assert (
        console.sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]["DesiredInstanceCount"]
        == 1
    )
    page.get_by_role("button", name="Apply changes").click()
    page.get_by_role("dialog").get_by_role("button", name="Update").click()
    wait_for_counts(console.sm, endpoint, current=2, desired=2)
    expect(page.locator("td", has_text="2 of 2")).to_be_visible()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """An ordinary web page on another origin (127.0.0.1 on another port), as a user might open."""
    (tmp_path / "index.html").write_text("<!doctype html><title>elsewhere</title><p>another site</p>")
    with static_files(tmp_path) as url:
        yield f"{url}/"


def invocations(server: RunningServer, endpoint: str) -> float:
    """The endpoint's InvokeEndpoint count from /metrics (0 before the first one)."""
    status, body = http_get(f"{server.url}/metrics", timeout=10)
    assert status == 200
    text = body.decode()
    for line in text.splitlines():
        if line.startswith("sagemaker_Invocations_total{") and f'EndpointName="{endpoint}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_page_on_another_origin_cannot_drive_the_server(
    console: Console, endpoint: str, page: Page, other_origin: str
) -> None:
    """The console adds no way in for other sites: without auth, the cross-site guard refuses them."""
    server = console.server
    before = invocations(server, endpoint)
    page.goto(other_origin)
    with page.expect_response(f"{server.url}/endpoints/{endpoint}/invocations") as seen:
        page.evaluate(
            """async (url) => {
                await fetch(url, {method: "POST", mode: "no-cors", body: '{"from": "elsewhere"}'});
            }""",
            f"{server.url}/endpoints/{endpoint}/invocations",
        )
    assert seen.value.status == 403  # refused by the cross-site guard, before the model
    # It cannot read the server's answers either (no CORS): a readable fetch fails outright.
    read = page.evaluate(
        """async (url) => {
            const headers = {"x-amz-target": "SageMaker.ListEndpoints"};
            try { await fetch(url, {method: "POST", body: "{}", headers});
                  return "read"; }
            catch (error) { return "refused"; }
        }""",
        f"{server.url}/",
    )
    assert read == "refused"
    assert invocations(server, endpoint) == before
    assert (
        server.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    )


def test_deleting_the_endpoint_asks_first_then_deletes(console: Console, endpoint: str, page: Page) -> None:
    page.goto(f"{console_url(console.server)}#/endpoints/{endpoint}")
    expect(page.locator(".badge")).to_have_text("InService")
    page.get_by_role("button", name="Delete endpoint").click()
    page.keyboard.press("Escape")  # the dialog's Cancel, from the keyboard
    assert console.sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    page.get_by_role("button", name="Delete endpoint").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{console_url(console.server)}#/endpoints")
    expect(page.locator(f"tr[data-name='{endpoint}']")).to_have_count(0)
    console.sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        console.sm.describe_endpoint(EndpointName=endpoint)


def test_the_static_files_carry_a_strict_policy_and_only_shipped_files(console: Console) -> None:
    index = raw_get(console.server.url, "/console/")
    assert index.status == 200
    policy = index.getheader("Content-Security-Policy") or ""
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and index.getheader("X-Frame-Options") == "DENY"
    etag = index.getheader("ETag") or ""
    assert raw_get(console.server.url, "/console/", {"If-None-Match": etag}).status == 304
    assert raw_get(console.server.url, "/console").getheader("Location") == "/console/"
    assert raw_get(console.server.url, "/console/js/../../_moorage/info").status == 404
    assert raw_get(console.server.url, "/console/%2e%2e/state.sqlite3").status == 404
    # The Host guard covers the console like every route (DNS rebinding).
    assert raw_get(console.server.url, "/console/", {"Host": "attacker.example"}).status == 403


def test_the_pure_javascript_sha256_matches_webcrypto(console: Console, page: Page) -> None:
    """A console reached over plain http:// by an address is not a secure context and has no WebCrypto;
    sigv4.js then signs with sha256.js, which must agree with WebCrypto (and hashlib) exactly."""
    page.goto(console_url(console.server))
    result = page.evaluate(
        """async () => {
            const { sha256, hmacSha256 } = await import("./js/sha256.js");
            const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
            const out = [];
            for (const n of [0, 3, 55, 56, 64, 1000]) {
                const data = new Uint8Array(n).map((_, i) => (i * 7 + 1) & 255);
                const web = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
                const secret = new Uint8Array(n % 2 ? 100 : 20).fill(n + 11);  // longer than a block, or not
                const hmac = {name: "HMAC", hash: "SHA-256"};
                const key = await crypto.subtle.importKey("raw", secret, hmac, false, ["sign"]);
                const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, data));
                out.push([hex(sha256(data)), hex(web), hex(hmacSha256(secret, data)), hex(mac)]);
            }
            return out;
        }"""
    )
    for mine, web, my_mac, web_mac in result:
        assert (mine, my_mac) == (web, web_mac)
    assert result[0][0] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256(b"")


def test_an_async_queue_shows_its_backlog(console: Console, page: Page, tmp_path: Path) -> None:
    s3 = console.server.client("s3")
    bucket = stage(s3, {"in/held.csv": "block\n", "in/next.csv": "1,2\n"})
    gate = Gate()
    try:
        endpoint = deploy(
            console.sm,
            pack_handler(tmp_path, SCORE_HANDLER),
            env={"GATE_URL": gate.url},
            async_config={
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
                "OutputConfig": {"S3OutputPath": f"s3://{bucket}/out"},
            },
        )
        for key in ("held", "next"):
            console.runtime.invoke_endpoint_async(
                EndpointName=endpoint, InputLocation=f"s3://{bucket}/in/{key}.csv", ContentType="text/csv"
            )
        gate.wait_for_arrival()  # the first request is in its handler, the second waits behind it
        page.goto(f"{console_url(console.server)}#/jobs")
        row = page.get_by_role("row", name=endpoint)
        expect(row.locator("td").first).to_have_text("2")
        expect(row.locator("td").last).to_have_text("no")  # waiting for its turn, not for capacity
        gate.opened.set()
        expect(row.locator("td").first).to_have_text("0")
    finally:
        gate.close()


def test_a_transform_job_shows_its_progress_and_stops_when_asked(
    console: Console, page: Page, tmp_path: Path
) -> None:
    s3 = console.server.client("s3")
    bucket = stage(s3, {"in/a.csv": "1,2\n", "in/b.csv": "3,4\n", "in/c.csv": "block\n"})
    gate = Gate()
    try:
        model = create_model(console.sm, pack_handler(tmp_path, SCORE_HANDLER), env={"GATE_URL": gate.url})
        job = start_job(console.sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out/")
        page.goto(f"{console_url(console.server)}#/jobs")
        row = page.locator(f"tr[data-name='{job}']")
        gate.wait_for_arrival()  # two objects done, the third held in its handler
        expect(row.locator("td.progress")).to_contain_text("2/3 objects, 2 records")
        percent = int(row.locator("progress").get_attribute("value") or "0")
        assert 0 < percent < 100
        screenshot(page, "jobs")
        row.get_by_role("button", name="Stop").click()
        page.get_by_role("dialog").get_by_role("button", name="Stop job").click()
        assert wait_for_end(console.sm, job)["TransformJobStatus"] == "Stopped"
        expect(row.locator(".badge")).to_have_text("Stopped")
        assert keys(s3, bucket, "out/") == ["out/a.csv.out", "out/b.csv.out"]
    finally:
        gate.close()
