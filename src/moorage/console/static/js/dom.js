// Building the page: elements from data, never from HTML strings (no inner HTML anywhere), so text
// that comes from the server (names, log lines, model output) can never become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "for") el.htmlFor = value;
    else if (name === "value") el.value = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function text(el, value) {
  const s = String(value);
  if (el.textContent !== s) el.textContent = s;
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) if (value !== undefined) el.setAttribute(name, String(value));
  append(el, children);
  return el;
}

// A confirmation in a modal <dialog>: focus lands on Cancel, Escape cancels, Enter on a button acts.
export function confirmAction(title, message, action = "Confirm") {
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const ok = h("button", { type: "button", class: "danger" }, action);
    const dialog = h(
      "dialog",
      { "aria-labelledby": "confirm-title", class: "confirm" },
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, message),
      h("div", { class: "buttons" }, cancel, ok),
    );
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener("click", () => done(false));
    ok.addEventListener("click", () => done(true));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

export function toast(message, kind = "info") {
  const region = document.getElementById("toast");
  const item = h("div", { class: `toast ${kind}` }, message);
  region.append(item);
  setTimeout(() => item.remove(), 6000);
}

// "3 min ago" for an AWS timestamp (seconds since the epoch, as the JSON APIs send it).
export function age(seconds) {
  const delta = Math.max(0, Date.now() / 1000 - Number(seconds));
  if (delta < 60) return `${Math.floor(delta)} s`;
  if (delta < 3600) return `${Math.floor(delta / 60)} min`;
  if (delta < 86400) return `${Math.floor(delta / 3600)} h`;
  return `${Math.floor(delta / 86400)} d`;
}

export function when(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

// Runs `fn` now and every `ms` while the page is visible; stops for good when `stop()` is called.
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  let running = false;
  const tick = async () => {
    timer = null;
    if (stopped || document.hidden) return;
    if (!running) {
      running = true;
      try {
        await fn();
      } catch (error) {
        console.error(error);
      } finally {
        running = false;
      }
    }
    if (!stopped && !document.hidden && timer === null) timer = setTimeout(tick, ms);
  };
  const wake = () => {
    if (!document.hidden && timer === null && !stopped) tick();
  };
  document.addEventListener("visibilitychange", wake);
  tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", wake);
  };
}

export function statusBadge(status) {
  const kind = /InService|Completed/.test(status)
    ? "ok"
    : /Failed|OutOfService/.test(status)
      ? "bad"
      : /Stopped/.test(status)
        ? "idle"
        : "busy";
  return h("span", { class: `badge ${kind}` }, status);
}

export function errorPanel(error) {
  return h("div", { class: "error", role: "alert" }, h("strong", {}, error.code || "Error"), ": ", error.message);
}
