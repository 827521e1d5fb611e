// Metrics: per endpoint and variant, invocations, 4xx/5xx errors and model/overhead latency
// percentiles over a chosen window, from moorage's metric history (CloudWatch GetMetricData, the
// namespace AWS/SageMaker and the dimensions EndpointName, VariantName, as boto3 reads them).

import { call } from "../api.js";
import { lineChart } from "../chart.js";
import { errorPanel, every, h } from "../dom.js";

const WINDOWS = [
  [15 * 60, "Last 15 minutes", 60],
  [60 * 60, "Last hour", 60],
  [3 * 3600, "Last 3 hours", 300],
  [12 * 3600, "Last 12 hours", 900],
];
const REFRESH_MS = 5000;

const CHARTS = [
  { title: "Invocations", unit: "count per period", series: [["Invocations", "Sum", "Invocations"]] },
  {
    title: "Errors",
    unit: "count per period",
    series: [["Invocation4XXErrors", "Sum", "4xx"], ["Invocation5XXErrors", "Sum", "5xx"]],
  },
  {
    title: "Model latency",
    unit: "microseconds",
    series: [["ModelLatency", "p50", "p50"], ["ModelLatency", "p90", "p90"], ["ModelLatency", "p99", "p99"]],
  },
  {
    title: "Overhead latency",
    unit: "microseconds",
    series: [["OverheadLatency", "p50", "p50"], ["OverheadLatency", "p99", "p99"]],
  },
];

export function mount(main, name) {
  const windowSelect = h("select", { id: "metrics-window" }, WINDOWS.map(([s, label]) => h("option", { value: String(s) }, label)));
  const variantSelect = h("select", { id: "metrics-variant" });
  const problem = h("div");
  const charts = h("div", { class: "charts" });
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/endpoints" }, "Endpoints"), " / ",
      h("a", { href: `#/endpoints/${encodeURIComponent(name)}` }, name), " / metrics"),
    h("div", { class: "title" }, h("h1", {}, `Metrics of ${name}`)),
    h("div", { class: "toolbar" },
      h("div", {}, h("label", { for: "metrics-variant" }, "Variant"), variantSelect),
      h("div", {}, h("label", { for: "metrics-window" }, "Window"), windowSelect)),
    problem,
    charts,
  );

  async function variants() {
    const d = await call("sagemaker", "DescribeEndpoint", { EndpointName: name });
    const names = (d.ProductionVariants || []).map((v) => v.VariantName);
    variantSelect.replaceChildren(...names.map((v) => h("option", { value: v }, v)));
  }

  async function draw() {
    if (!variantSelect.value) await variants();
    const span = Number(windowSelect.value);
    const [, , period] = WINDOWS.find(([s]) => s === span);
    const end = Math.ceil(Date.now() / 1000 / period) * period;
    const start = end - span;
    const dimensions = [
      { Name: "EndpointName", Value: name },
      { Name: "VariantName", Value: variantSelect.value },
    ];
    const queries = CHARTS.flatMap((chart, c) => chart.series.map(([metric, stat], s) => ({
      Id: `c${c}s${s}`,
      MetricStat: { Metric: { Namespace: "AWS/SageMaker", MetricName: metric, Dimensions: dimensions }, Period: period, Stat: stat },
      ReturnData: true,
    })));
    let results;
    try {
      const answer = await call("cloudwatch", "GetMetricData", { MetricDataQueries: queries, StartTime: start, EndTime: end });
      results = new Map((answer.MetricDataResults || []).map((r) => [r.Id, r]));
      problem.replaceChildren();
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
      return;
    }
    charts.replaceChildren(...CHARTS.map((chart, c) => lineChart({
      title: chart.title,
      unit: chart.unit,
      start,
      end,
      series: chart.series.map(([, , label], s) => {
        const r = results.get(`c${c}s${s}`) || { Timestamps: [], Values: [] };
        return { label, points: (r.Timestamps || []).map((t, i) => [toSeconds(t), r.Values[i]]) };
      }),
    })));
  }

  windowSelect.addEventListener("change", draw);
  variantSelect.addEventListener("change", draw);
  return every(REFRESH_MS, draw);
}

function toSeconds(timestamp) {
  return typeof timestamp === "number" ? timestamp : Date.parse(timestamp) / 1000;
}
