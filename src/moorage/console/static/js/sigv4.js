// AWS Signature Version 4 in the browser: the same signature botocore computes for the CLI and boto3,
// so the server checks a console request exactly as it checks theirs (api/auth.py).

import { hmacSha256, sha256 } from "./sha256.js";

const encoder = new TextEncoder();

function subtle() {
  return globalThis.crypto && globalThis.crypto.subtle ? globalThis.crypto.subtle : null;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(data) {
  const webcrypto = subtle();
  if (webcrypto) return hex(new Uint8Array(await webcrypto.digest("SHA-256", data)));
  return hex(sha256(data));
}

async function hmac(key, message) {
  const data = encoder.encode(message);
  const webcrypto = subtle();
  if (!webcrypto) return hmacSha256(key, data);
  const imported = await webcrypto.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await webcrypto.sign("HMAC", imported, data));
}

// 20260101T120000Z
export function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// Each path segment percent-encoded as Python's quote(safe="/~") does (the server's canonical URI).
function canonicalPath(path) {
  return path
    .split("/")
    .map((part) => encodeURIComponent(part).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase()))
    .join("/");
}

// The headers to send: `headers` plus x-amz-date and Authorization. Host is signed as the browser
// will send it (location.host) and left for the browser to set.
export async function sign({ method, path, headers, body, key, region, service, now = new Date() }) {
  const date = amzDate(now);
  const signed = { host: location.host, "x-amz-date": date };
  for (const [name, value] of Object.entries(headers)) signed[name.toLowerCase()] = String(value);
  const names = Object.keys(signed).sort();
  const canonicalHeaders = names.map((name) => `${name}:${signed[name].trim().replace(/\s+/g, " ")}\n`).join("");
  const signedHeaders = names.join(";");
  const canonical = [method, canonicalPath(path), "", canonicalHeaders, signedHeaders, await sha256Hex(body)].join("\n");
  const scope = `${date.slice(0, 8)}/${region}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(encoder.encode(canonical))].join("\n");
  let signingKey = await hmac(encoder.encode("AWS4" + key.secret), date.slice(0, 8));
  for (const part of [region, service, "aws4_request"]) signingKey = await hmac(signingKey, part);
  const signature = hex(await hmac(signingKey, toSign));
  delete signed.host;
  signed.authorization = `AWS4-HMAC-SHA256 Credential=${key.id}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return signed;
}
