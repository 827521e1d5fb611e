"""The console on `moorage serve --auth sigv4`: signing in, and what a key may do.

The console holds no authority of its own: the page is served to anyone, but every call it makes is
SigV4-signed in the browser with the key the user types, so without a key the API refuses it, a wrong
secret is refused, and an 'invoke' key can invoke but not delete. (A page from another origin driving a
default server: test_console.py.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from integration.console.browsing import console_url, screenshot
from support.hosting import deploy, pack_fault_handler, unique
from support.servers import start_server, wait_until_gone
from support.signed import Key, Secured, create_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("console-auth")
    data = root / "data"
    endpoint = unique("signed")
    admin = create_key(data)
    invoker = create_key(data, "--role", "invoke", "--endpoints", endpoint)
    server = start_server(data, args=["--auth", "sigv4"])
    try:
        deploy(server.client("sagemaker", credentials=admin), pack_fault_handler(root), name=endpoint)
        yield Secured(server, admin, invoker, endpoint)
    finally:
        server.stop()
        assert not wait_until_gone(server.tag), server.log()[-3000:]


def sign_in(page: Page, secured: Secured, key: Key) -> None:
    page.goto(console_url(secured.server))
    page.get_by_label("Access key ID").fill(key[0])
    page.get_by_label("Secret access key").fill(key[1])
    page.get_by_role("button", name="Sign in").click()


def test_without_a_key_the_console_asks_to_sign_in_and_the_api_refuses(secured: Secured, page: Page) -> None:
    page.goto(f"{console_url(secured.server)}#/endpoints")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "signin")
    # What the page's own script could send without a key: refused by the API, not just hidden.
    answer = page.evaluate(
        """async () => {
            const r = await fetch("/", {method: "POST", body: "{}", headers: {
                "content-type": "application/x-amz-json-1.1", "x-amz-target": "SageMaker.ListEndpoints"}});
            return [r.status, await r.json()];
        }"""
    )
    assert answer[0] == 403
    assert answer[1]["__type"].endswith("MissingAuthenticationToken")


def test_a_wrong_secret_is_refused(secured: Secured, page: Page) -> None:
    sign_in(page, secured, (secured.admin[0], "not-the-secret"))
    expect(page.get_by_role("alert")).to_contain_text("InvalidSignatureException")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0  # a refused key is not kept


def test_an_admin_key_signs_every_call(secured: Secured, page: Page) -> None:
    sign_in(page, secured, secured.admin)
    row = page.locator(f"tr[data-name='{secured.endpoint}']")
    expect(row.locator(".badge")).to_have_text("InService")
    expect(row.locator("td.variants")).to_have_text("AllTraffic: 1, 1/1")  # DescribeEndpoint, signed
    expect(page.locator("#nav .key")).to_have_text(secured.admin[0])
    page.goto(f"{console_url(secured.server)}#/endpoints/{secured.endpoint}")
    page.get_by_label("Body").fill('{"signed": true}')
    page.get_by_role("button", name="Invoke").click()
    expect(page.locator(".invoke-status")).to_contain_text("HTTP 200")
    assert '"signed": true' in page.locator(".invoke-answer").inner_text()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_an_invoke_key_can_invoke_but_not_delete(secured: Secured, page: Page) -> None:
    sign_in(page, secured, secured.invoker)
    expect(page.get_by_role("alert")).to_contain_text(
        "AccessDeniedException"
    )  # ListEndpoints is not its to call
    page.goto(f"{console_url(secured.server)}#/endpoints/{secured.endpoint}")
    page.get_by_label("Body").fill('{"role": "invoke"}')
    page.get_by_role("button", name="Invoke").click()
    expect(page.locator(".invoke-status")).to_contain_text("HTTP 200")
    page.get_by_role("button", name="Delete endpoint").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("alert").first).to_contain_text("AccessDeniedException")
    sm = secured.server.client("sagemaker", credentials=secured.admin)
    assert sm.describe_endpoint(EndpointName=secured.endpoint)["EndpointStatus"] == "InService"
