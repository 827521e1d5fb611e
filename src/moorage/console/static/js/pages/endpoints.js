// Endpoints: every endpoint with its status, variants (weight, instances) and age, refreshed live.
// ListEndpoints gives names and status for all of them; DescribeEndpoint (variants, instance
// counts) is asked only for rows on screen, and again only when they are due (at once when the
// endpoint changed, every 5 s while it is changing, every 15 s once settled), so an open page with
// 200 endpoints costs a few requests every refresh, not 200.

import { call, listAll } from "../api.js";
import { age, errorPanel, every, h, statusBadge, text } from "../dom.js";

const REFRESH_MS = 5000;
const SETTLED_MS = 15000; // a settled endpoint's row is described again at most this often
const SETTLED = new Set(["InService", "Failed", "OutOfService"]);
const PARALLEL = 6;

export function mount(main) {
  const rows = new Map(); // name -> { tr, cells, summary, described, describedAt, visible }
  const filter = h("input", { id: "endpoint-filter", type: "search", placeholder: "Filter by name", autocomplete: "off" });
  const count = h("span", { class: "muted", "aria-live": "polite" });
  const problem = h("div");
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "endpoints" },
    h("caption", { class: "visually-hidden" }, "Endpoints"),
    h("thead", {}, h("tr", {}, ["Name", "Status", "Variants (weight, instances)", "Age"].map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  main.append(
    h("div", { class: "title" }, h("h1", {}, "Endpoints"), count),
    h("div", { class: "toolbar" }, h("label", { for: "endpoint-filter" }, "Filter"), filter),
    problem,
    h("div", { class: "scroll" }, table),
  );

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const row = rows.get(entry.target.dataset.name);
      if (row) row.visible = entry.isIntersecting;
    }
    describeDue();
  });

  function applyFilter() {
    const needle = filter.value.trim().toLowerCase();
    for (const [name, row] of rows) row.tr.hidden = needle !== "" && !name.toLowerCase().includes(needle);
  }
  filter.addEventListener("input", applyFilter);

  function newRow(name) {
    const link = h("a", { href: `#/endpoints/${encodeURIComponent(name)}` }, name);
    const cells = { status: h("td"), variants: h("td", { class: "variants" }, "…"), age: h("td", { class: "num age" }) };
    const tr = h("tr", { dataset: { name } }, h("th", { scope: "row" }, link), cells.status, cells.variants, cells.age);
    const row = { tr, cells, summary: null, described: null, describedAt: 0, visible: false, status: "" };
    observer.observe(tr);
    return row;
  }

  function drawVariants(row) {
    const variants = (row.described && row.described.ProductionVariants) || [];
    const parts = variants.map((v) => {
      const weight = v.CurrentWeight ?? v.DesiredWeight ?? "?";
      const current = v.CurrentInstanceCount ?? 0;
      const desired = v.DesiredInstanceCount ?? current;
      return `${v.VariantName}: ${weight}, ${current}/${desired}`;
    });
    text(row.cells.variants, parts.length ? parts.join("; ") : "–");
  }

  let inflight = 0;
  function describeDue() {
    const now = Date.now();
    for (const [name, row] of rows) {
      if (inflight >= PARALLEL) return;
      if (!row.visible || row.tr.hidden || row.loading) continue;
      const stale = !row.described || row.described.LastModifiedTime !== row.summary.LastModifiedTime;
      const every = SETTLED.has(row.summary.EndpointStatus) ? SETTLED_MS : REFRESH_MS;
      if (!stale && now - row.describedAt < every) continue;
      row.loading = true;
      inflight += 1;
      call("sagemaker", "DescribeEndpoint", { EndpointName: name })
        .then((described) => {
          row.described = described;
          row.describedAt = Date.now();
          drawVariants(row);
        })
        .catch(() => {
          row.describedAt = Date.now(); // deleted meanwhile: the next list drops the row
        })
        .finally(() => {
          row.loading = false;
          inflight -= 1;
          describeDue();
        });
    }
  }

  async function refresh() {
    let summaries;
    try {
      summaries = await listAll("sagemaker", "ListEndpoints", { MaxResults: 100, SortBy: "Name", SortOrder: "Ascending" }, "Endpoints");
      problem.replaceChildren();
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
      return;
    }
    const seen = new Set();
    let previous = null;
    for (const summary of summaries) {
      const name = summary.EndpointName;
      seen.add(name);
      let row = rows.get(name);
      if (!row) {
        row = newRow(name);
        rows.set(name, row);
      }
      row.summary = summary;
      if (row.status !== summary.EndpointStatus) {
        row.status = summary.EndpointStatus;
        row.cells.status.replaceChildren(statusBadge(summary.EndpointStatus));
      }
      text(row.cells.age, age(summary.CreationTime));
      // keep the table in ListEndpoints' order, moving only rows that are out of place
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (expected !== row.tr) tbody.insertBefore(row.tr, expected);
      previous = row.tr;
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        observer.unobserve(row.tr);
        row.tr.remove();
        rows.delete(name);
      }
    }
    text(count, `${summaries.length} endpoint${summaries.length === 1 ? "" : "s"}`);
    applyFilter();
    main.dataset.loaded = "true";
    describeDue();
  }

  const stopRefresh = every(REFRESH_MS, refresh);
  return () => {
    stopRefresh();
    observer.disconnect();
  };
}
