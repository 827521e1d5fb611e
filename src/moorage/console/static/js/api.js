// Every call the console makes, through one function per protocol: the AWS JSON 1.1 APIs on
// `POST /` (SageMaker, CloudWatch Logs, CloudWatch) and InvokeEndpoint. With a signed-in key each
// request is SigV4-signed in the browser; the key lives in this tab's sessionStorage only.

import { sign } from "./sigv4.js";

const encoder = new TextEncoder();
const KEY_ITEM = "moorage.console.key";

export const SERVICES = {
  sagemaker: { prefix: "SageMaker", signingName: "sagemaker", contentType: "application/x-amz-json-1.1" },
  logs: { prefix: "Logs_20140328", signingName: "logs", contentType: "application/x-amz-json-1.1" },
  cloudwatch: { prefix: "GraniteServiceVersion20100801", signingName: "monitoring", contentType: "application/x-amz-json-1.0" },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let info = null;
let key = loadKey();

function loadKey() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY_ITEM) || "null");
    return stored && stored.id && stored.secret ? stored : null;
  } catch {
    return null;
  }
}

export function currentKey() {
  return key;
}

export function useKey(next, remember) {
  key = next;
  if (next && remember) sessionStorage.setItem(KEY_ITEM, JSON.stringify(next));
  if (!next) sessionStorage.removeItem(KEY_ITEM);
}

export async function serverInfo() {
  if (info === null) {
    const response = await fetch("/_moorage/info", { credentials: "omit", cache: "no-store" });
    info = await response.json();
  }
  return info;
}

async function headersFor(method, path, headers, body, signingName) {
  if (!key) return headers;
  const { region } = await serverInfo();
  return sign({ method, path, headers, body, key, region, service: signingName });
}

function errorFrom(status, headers, text) {
  let code = headers.get("x-amzn-errortype") || "";
  let message = text.slice(0, 2000);
  try {
    const data = JSON.parse(text);
    code = data.__type || data.code || code;
    message = data.message || data.Message || message;
  } catch {
    /* not JSON: keep the text */
  }
  code = String(code).split(":")[0].split("#").pop() || `HTTP ${status}`;
  return new ApiError(status, code, message);
}

// One AWS JSON 1.1 operation, e.g. call("sagemaker", "DescribeEndpoint", {EndpointName}).
export async function call(service, operation, input = {}) {
  const { prefix, signingName, contentType } = SERVICES[service];
  const body = encoder.encode(JSON.stringify(input));
  const headers = await headersFor(
    "POST",
    "/",
    { "content-type": contentType, "x-amz-target": `${prefix}.${operation}` },
    body,
    signingName,
  );
  const response = await fetch("/", { method: "POST", headers, body, credentials: "omit", cache: "no-store" });
  const text = await response.text();
  if (!response.ok) throw errorFrom(response.status, response.headers, text);
  return text ? JSON.parse(text) : {};
}

// Every page of a List* operation, following NextToken.
export async function listAll(service, operation, input, member) {
  const items = [];
  let token;
  do {
    const page = await call(service, operation, token ? { ...input, NextToken: token } : input);
    items.push(...(page[member] || []));
    token = page.NextToken;
  } while (token);
  return items;
}

// InvokeEndpoint with the bytes as given: the answer's status, headers, body and round-trip time.
export async function invoke(endpoint, body, contentType, accept) {
  const path = `/endpoints/${encodeURIComponent(endpoint)}/invocations`;
  const plain = { "content-type": contentType };
  if (accept) plain.accept = accept;
  const headers = await headersFor("POST", path, plain, body, "sagemaker");
  const started = performance.now();
  const response = await fetch(path, { method: "POST", headers, body, credentials: "omit", cache: "no-store" });
  const bytes = new Uint8Array(await response.arrayBuffer());
  const ms = performance.now() - started;
  return { status: response.status, headers: [...response.headers.entries()], bytes, ms };
}

// GET /metrics (Prometheus text), signed like any other call: the async queues' gauges live there.
export async function prometheus() {
  const headers = await headersFor("GET", "/metrics", {}, new Uint8Array(), "sagemaker");
  const response = await fetch("/metrics", { headers, credentials: "omit", cache: "no-store" });
  const body = await response.text();
  if (!response.ok) throw errorFrom(response.status, response.headers, body);
  return body;
}

// `name{EndpointName="x"} value` lines of one metric family: endpoint -> value.
export function gauge(text, name) {
  const values = new Map();
  const pattern = new RegExp(`^${name}\\{EndpointName="((?:[^"\\\\]|\\\\.)*)"\\} (\\S+)$`, "gm");
  for (const match of text.matchAll(pattern)) values.set(match[1].replace(/\\(.)/g, "$1"), Number(match[2]));
  return values;
}
