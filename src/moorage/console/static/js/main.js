// The console's shell: sign-in, navigation and a hash router (#/endpoints, #/endpoints/<name>,
// #/endpoints/<name>/metrics, #/logs/<group>, #/jobs). Each page module exports
// `mount(main, ...params)`, which draws into <main> and returns a function that stops its refreshes.

import { ApiError, call, currentKey, serverInfo, useKey } from "./api.js";
import { errorPanel, h } from "./dom.js";
import * as endpoint from "./pages/endpoint.js";
import * as endpoints from "./pages/endpoints.js";
import * as jobs from "./pages/jobs.js";
import * as logs from "./pages/logs.js";
import * as metrics from "./pages/metrics.js";

const ROUTES = [
  [/^#\/endpoints\/?$/, endpoints, "endpoints"],
  [/^#\/endpoints\/([^/]+)\/metrics$/, metrics, "endpoints"],
  [/^#\/endpoints\/([^/]+)$/, endpoint, "endpoints"],
  [/^#\/logs(?:\/(.+))?$/, logs, "logs"],
  [/^#\/jobs$/, jobs, "jobs"],
];

const main = document.getElementById("main");
let stop = () => {};
let signInRequired = false;

function nav(active) {
  const links = [
    ["#/endpoints", "Endpoints", "endpoints"],
    ["#/logs", "Logs", "logs"],
    ["#/jobs", "Jobs", "jobs"],
  ];
  const who = currentKey()
    ? h(
        "span",
        { class: "who" },
        h("span", { class: "key" }, currentKey().id),
        h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
      )
    : null;
  document.getElementById("nav").replaceChildren(
    ...links.map(([href, label, name]) =>
      h("a", { href, "aria-current": name === active ? "page" : undefined }, label),
    ),
    ...(who ? [who] : []),
  );
}

function signOut() {
  useKey(null);
  signInRequired = true;
  location.hash = "#/signin";
  route();
}

function signInPage() {
  stop();
  stop = () => {};
  nav("");
  const id = h("input", { id: "key-id", name: "key-id", autocomplete: "username", required: true, spellcheck: "false" });
  const secret = h("input", { id: "key-secret", name: "key-secret", type: "password", autocomplete: "current-password", required: true });
  const problem = h("div", { class: "form-problem" }); // errorPanel inside is the alert
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "This server checks every request's signature (--auth sigv4). Use an access key from ",
      h("code", {}, "moorage credentials create"), "; the console signs each call with it in this tab."),
    h("label", { for: "key-id" }, "Access key ID"),
    id,
    h("label", { for: "key-secret" }, "Secret access key"),
    secret,
    h("button", { type: "submit" }, "Sign in"),
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    const candidate = { id: id.value.trim(), secret: secret.value.trim() };
    useKey(candidate, false);
    try {
      await call("sagemaker", "ListEndpoints", { MaxResults: 1 });
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "AccessDeniedException") {
        useKey(null);
        problem.append(errorPanel(error));
        return;
      }
      // An 'invoke' key: it may call InvokeEndpoint only, so the console offers just that.
    }
    useKey(candidate, true);
    signInRequired = false;
    location.hash = "#/endpoints";
  });
  main.replaceChildren(form);
  id.focus();
}

async function route() {
  if (signInRequired && !currentKey()) {
    signInPage();
    return;
  }
  const hash = location.hash || "#/endpoints";
  for (const [pattern, page, section] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    stop();
    nav(section);
    main.replaceChildren();
    const params = match.slice(1).map((part) => (part === undefined ? undefined : decodeURIComponent(part)));
    stop = page.mount(main, ...params) || (() => {});
    main.focus({ preventScroll: true });
    return;
  }
  location.hash = "#/endpoints";
}

async function start() {
  await serverInfo();
  if (!currentKey()) {
    try {
      await call("sagemaker", "ListEndpoints", { MaxResults: 1 });
    } catch (error) {
      // 403 MissingAuthenticationToken (or any signature problem): this server runs --auth sigv4.
      if (error instanceof ApiError && error.status === 403 && error.code !== "AccessDeniedException") {
        signInRequired = true;
      }
    }
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
