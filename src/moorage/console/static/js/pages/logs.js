// Logs: an endpoint's (or batch transform's) log group from the CloudWatch Logs API moorage serves,
// all instances or one, searched with a filter pattern, and tailed live (FilterLogEvents from the
// last event's time, each event shown once by its eventId).

import { call, listAll } from "../api.js";
import { errorPanel, every, h, text } from "../dom.js";

const TAIL_MS = 2000;
const KEEP = 2000; // lines kept on the page
const BACKLOG_MS = 60 * 60 * 1000;

export function mount(main, group) {
  const groupSelect = h("select", { id: "log-group" }, h("option", { value: "" }, "Choose a log group"));
  const streamSelect = h("select", { id: "log-stream" }, h("option", { value: "" }, "All instances"));
  const pattern = h("input", { id: "log-filter", type: "search", placeholder: "Text to find", autocomplete: "off" });
  const follow = h("input", { id: "log-follow", type: "checkbox", checked: true });
  const state = h("span", { class: "muted", "aria-live": "polite" });
  const problem = h("div");
  const list = h("ol", { class: "log", "aria-label": "Log events", tabindex: "0" });
  const form = h("form", { class: "toolbar wrap" },
    h("div", {}, h("label", { for: "log-group" }, "Log group"), groupSelect),
    h("div", {}, h("label", { for: "log-stream" }, "Instance"), streamSelect),
    h("div", {}, h("label", { for: "log-filter" }, "Search"), pattern),
    h("div", { class: "check" }, follow, h("label", { for: "log-follow" }, "Live tail")),
    h("button", { type: "submit" }, "Show"));
  main.append(h("div", { class: "title" }, h("h1", {}, "Logs"), state), form, problem, list);

  let seen = new Set();
  let last = 0;
  let generation = 0;

  function show(events) {
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    const fresh = [];
    for (const event of events) {
      if (seen.has(event.eventId)) continue;
      seen.add(event.eventId);
      last = Math.max(last, event.timestamp);
      const time = new Date(event.timestamp).toISOString().slice(11, 23);
      fresh.push(h("li", {}, h("time", { datetime: new Date(event.timestamp).toISOString() }, time), h("span", { class: "stream" }, event.logStreamName), h("span", { class: "message" }, event.message)));
    }
    list.append(...fresh);
    while (list.childElementCount > KEEP) list.firstElementChild.remove();
    if (seen.size > KEEP * 4) seen = new Set([...seen].slice(-KEEP));
    if (atBottom) list.scrollTop = list.scrollHeight;
    text(state, `${list.childElementCount} line${list.childElementCount === 1 ? "" : "s"}`);
  }

  function request(startTime, nextToken) {
    const input = { logGroupName: groupSelect.value, startTime, limit: 1000 };
    if (streamSelect.value) input.logStreamNames = [streamSelect.value];
    if (pattern.value.trim()) input.filterPattern = pattern.value.trim();
    if (nextToken) input.nextToken = nextToken;
    return call("logs", "FilterLogEvents", input);
  }

  // Everything since `startTime`, following nextToken (the scan is bounded per page on the server).
  async function fetchFrom(startTime, mine) {
    let token;
    for (let page = 0; page < 20; page++) {
      const answer = await request(startTime, token);
      if (mine !== generation) return;
      show(answer.events || []);
      token = answer.nextToken;
      if (!token || !(answer.events || []).length) return;
    }
  }

  async function load() {
    generation += 1;
    const mine = generation;
    seen = new Set();
    last = 0;
    list.replaceChildren();
    problem.replaceChildren();
    if (!groupSelect.value) return;
    try {
      await fetchFrom(Date.now() - BACKLOG_MS, mine);
      list.dataset.ready = "true";
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
    }
  }

  async function tail() {
    if (!follow.checked || !groupSelect.value || list.dataset.ready !== "true") return;
    try {
      await fetchFrom(last || Date.now() - BACKLOG_MS, generation);
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
    }
  }

  async function loadStreams() {
    streamSelect.replaceChildren(h("option", { value: "" }, "All instances"));
    if (!groupSelect.value) return;
    try {
      const streams = await listAll("logs", "DescribeLogStreams", { logGroupName: groupSelect.value }, "logStreams");
      streamSelect.append(...streams.map((s) => h("option", { value: s.logStreamName }, s.logStreamName)));
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
    }
  }

  groupSelect.addEventListener("change", async () => {
    location.replace(`#/logs/${encodeURIComponent(groupSelect.value)}`);
  });
  streamSelect.addEventListener("change", load);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });

  (async () => {
    try {
      const groups = await listAll("logs", "DescribeLogGroups", { logGroupNamePrefix: "/aws/sagemaker/" }, "logGroups");
      const names = groups.map((g) => g.logGroupName);
      if (group && !names.includes(group)) names.unshift(group);
      groupSelect.append(...names.map((name) => h("option", { value: name }, name)));
      if (group) groupSelect.value = group;
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
      return;
    }
    await loadStreams();
    await load();
  })();

  return every(TAIL_MS, tail);
}
