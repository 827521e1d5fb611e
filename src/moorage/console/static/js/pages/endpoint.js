// One endpoint: status and failure reasons, variants with weight and instance count (editable), its
// config and models, an invoke form that shows the answer, latency and headers, and delete.

import { ApiError, call, invoke } from "../api.js";
import { confirmAction, errorPanel, every, h, statusBadge, text, toast, when } from "../dom.js";

const REFRESH_MS = 3000;
const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

export function mount(main, name) {
  const status = h("span");
  const problem = h("div");
  const facts = h("dl", { class: "facts" });
  const variantsBody = h("tbody");
  const edits = new Map(); // variant -> {weight input, count input}
  const applyButton = h("button", { type: "button" }, "Apply changes");
  const deleteButton = h("button", { type: "button", class: "danger" }, "Delete endpoint");
  const configSection = h("section", { "aria-labelledby": "config-title" }, h("h2", { id: "config-title" }, "Configuration and models"));
  let configShown = null;
  let gone = false;

  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/endpoints" }, "Endpoints"), " / ", name),
    h("div", { class: "title" }, h("h1", {}, name), status),
    h("nav", { class: "tabs", "aria-label": "About this endpoint" },
      h("a", { href: `#/endpoints/${encodeURIComponent(name)}/metrics` }, "Metrics"),
      h("a", { href: `#/logs/${encodeURIComponent("/aws/sagemaker/Endpoints/" + name)}` }, "Logs")),
    problem,
    facts,
    h("section", { "aria-labelledby": "variants-title" },
      h("h2", { id: "variants-title" }, "Variants"),
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Variant", "Instances now", "Weight", "Instance count"].map((c) => h("th", { scope: "col" }, c)))),
        variantsBody)),
      h("div", { class: "buttons" }, applyButton)),
    invokeForm(name),
    configSection,
    h("section", { "aria-labelledby": "danger-title" }, h("h2", { id: "danger-title" }, "Delete"), h("p", {}, "Deleting stops every instance; the configuration and models stay."), deleteButton),
  );

  function drawFacts(d) {
    const items = [
      ["ARN", d.EndpointArn],
      ["Endpoint config", d.EndpointConfigName],
      ["Created", when(d.CreationTime)],
      ["Last modified", when(d.LastModifiedTime)],
    ];
    if (d.FailureReason) items.push(["Failure reason", d.FailureReason]);
    for (const v of d.ProductionVariants || []) {
      for (const s of v.VariantStatus || []) {
        if (s.StatusMessage) items.push([`${v.VariantName}: ${s.Status}`, s.StatusMessage]);
      }
    }
    facts.replaceChildren(...items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: k === "Failure reason" ? "failure" : undefined }, v)]));
  }

  function drawVariants(d) {
    for (const v of d.ProductionVariants || []) {
      let edit = edits.get(v.VariantName);
      if (!edit) {
        const id = `v-${v.VariantName}`;
        edit = {
          now: h("td", { class: "num" }),
          weight: h("input", { id: `${id}-weight`, type: "number", min: "0", step: "any", value: v.CurrentWeight ?? v.DesiredWeight ?? 1 }),
          count: h("input", { id: `${id}-count`, type: "number", min: "0", step: "1", value: v.DesiredInstanceCount ?? v.CurrentInstanceCount ?? 1 }),
        };
        edits.set(v.VariantName, edit);
        variantsBody.append(h("tr", {},
          h("th", { scope: "row" }, v.VariantName), edit.now,
          h("td", {}, h("label", { for: `${id}-weight`, class: "visually-hidden" }, `Weight of ${v.VariantName}`), edit.weight),
          h("td", {}, h("label", { for: `${id}-count`, class: "visually-hidden" }, `Instance count of ${v.VariantName}`), edit.count)));
      }
      text(edit.now, `${v.CurrentInstanceCount ?? 0} of ${v.DesiredInstanceCount ?? v.CurrentInstanceCount ?? 0}`);
    }
  }

  async function drawConfig(d) {
    if (!d.EndpointConfigName || configShown === d.EndpointConfigName) return;
    configShown = d.EndpointConfigName;
    try {
      const config = await call("sagemaker", "DescribeEndpointConfig", { EndpointConfigName: d.EndpointConfigName });
      const blocks = [];
      for (const v of config.ProductionVariants || []) {
        let model = {};
        try {
          model = await call("sagemaker", "DescribeModel", { ModelName: v.ModelName });
        } catch (error) {
          model = { problem: error };
        }
        const container = model.PrimaryContainer || (model.Containers || [])[0] || {};
        const env = Object.entries(container.Environment || {}).map(([k, val]) => `${k}=${val}`).join("\n");
        blocks.push(h("div", { class: "card" },
          h("h3", {}, `${v.VariantName} → ${v.ModelName}`),
          h("dl", { class: "facts" },
            h("dt", {}, "Instance type"), h("dd", {}, v.InstanceType || "–"),
            h("dt", {}, "Initial count"), h("dd", {}, v.InitialInstanceCount ?? "–"),
            h("dt", {}, "Image"), h("dd", {}, container.Image || "–"),
            h("dt", {}, "Model data"), h("dd", {}, container.ModelDataUrl || (container.ModelDataSource ? JSON.stringify(container.ModelDataSource) : "–")),
            h("dt", {}, "Environment"), h("dd", {}, env ? h("pre", {}, env) : "–")),
          model.problem ? errorPanel(model.problem) : null));
      }
      configSection.replaceChildren(configSection.firstChild, ...blocks);
    } catch (error) {
      configSection.replaceChildren(configSection.firstChild, errorPanel(error));
    }
  }

  async function refresh() {
    if (gone) return;
    try {
      const d = await call("sagemaker", "DescribeEndpoint", { EndpointName: name });
      problem.replaceChildren();
      status.replaceChildren(statusBadge(d.EndpointStatus));
      drawFacts(d);
      drawVariants(d);
      drawConfig(d);
    } catch (error) {
      if (error instanceof ApiError && error.code === "ValidationException" && /Could not find/.test(error.message)) {
        status.replaceChildren(statusBadge("Deleted"));
      }
      problem.replaceChildren(errorPanel(error));
    }
  }

  applyButton.addEventListener("click", async () => {
    const desired = [...edits.entries()].map(([variant, edit]) => ({
      VariantName: variant,
      DesiredWeight: Number(edit.weight.value),
      DesiredInstanceCount: Number(edit.count.value),
    }));
    const summary = desired.map((d) => `${d.VariantName}: weight ${d.DesiredWeight}, ${d.DesiredInstanceCount} instance(s)`).join("; ");
    if (!(await confirmAction("Update weights and instance counts?", `${name} → ${summary}`, "Update"))) return;
    try {
      await call("sagemaker", "UpdateEndpointWeightsAndCapacities", { EndpointName: name, DesiredWeightsAndCapacities: desired });
      toast(`Updating ${name}: ${summary}`);
      refresh();
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
    }
  });

  deleteButton.addEventListener("click", async () => {
    if (!(await confirmAction("Delete this endpoint?", `${name} and all its instances will be deleted.`, "Delete"))) return;
    try {
      await call("sagemaker", "DeleteEndpoint", { EndpointName: name });
      gone = true;
      toast(`Deleted ${name}`);
      location.hash = "#/endpoints";
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
    }
  });

  return every(REFRESH_MS, refresh);
}

function invokeForm(name) {
  const contentType = h("input", { id: "invoke-content-type", list: "content-types", value: "application/json", required: true });
  const accept = h("input", { id: "invoke-accept", list: "content-types", value: "application/json" });
  const body = h("textarea", { id: "invoke-body", rows: "5", spellcheck: "false" }, "[[0.5, 0.25]]");
  const result = h("div", { class: "invoke-result", "aria-live": "polite" });
  const form = h("form", { class: "invoke" },
    h("datalist", { id: "content-types" },
      ["application/json", "text/csv", "text/plain", "application/x-npy", "application/octet-stream", "image/jpeg"].map((t) => h("option", { value: t }))),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "invoke-content-type" }, "Content type"), contentType),
      h("div", {}, h("label", { for: "invoke-accept" }, "Accept"), accept)),
    h("label", { for: "invoke-body" }, "Body"),
    body,
    h("button", { type: "submit" }, "Invoke"),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren(h("p", { class: "muted" }, "Invoking…"));
    try {
      const answer = await invoke(name, encoder.encode(body.value), contentType.value.trim(), accept.value.trim());
      let shown;
      try {
        shown = decoder.decode(answer.bytes);
      } catch {
        shown = `(${answer.bytes.length} bytes of binary data)`;
      }
      if (/json/.test(answer.headers.find(([k]) => k === "content-type")?.[1] || "")) {
        try {
          shown = JSON.stringify(JSON.parse(shown), null, 2);
        } catch {
          /* not valid JSON after all: show it as sent */
        }
      }
      result.replaceChildren(
        h("p", { class: "invoke-status" }, h("strong", {}, `HTTP ${answer.status}`), ` in ${answer.ms.toFixed(1)} ms`),
        h("h3", {}, "Answer"),
        h("pre", { class: "invoke-answer", tabindex: "0" }, shown),
        h("h3", {}, "Headers"),
        h("table", { class: "headers" }, h("tbody", {}, answer.headers.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))),
      );
    } catch (error) {
      result.replaceChildren(errorPanel(error));
    }
  });
  return h("section", { "aria-labelledby": "invoke-title" }, h("h2", { id: "invoke-title" }, "Invoke"), form);
}
