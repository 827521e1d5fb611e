// Jobs: batch transform jobs with their progress (DescribeTransformJob's MoorageProgress) and a Stop
// action, and the async inference queues (their backlog gauges from /metrics).

import { call, gauge, prometheus } from "../api.js";
import { age, confirmAction, errorPanel, every, h, statusBadge, toast } from "../dom.js";

const REFRESH_MS = 3000;
const ACTIVE = new Set(["InProgress", "Stopping"]);

export function mount(main) {
  const problem = h("div");
  const jobsBody = h("tbody");
  const queuesBody = h("tbody");
  const noJobs = h("p", { class: "muted" }, "No transform jobs.");
  const noQueues = h("p", { class: "muted" }, "No asynchronous endpoint has a queue.");
  main.append(
    h("div", { class: "title" }, h("h1", {}, "Jobs and queues")),
    problem,
    h("section", { "aria-labelledby": "transform-title" },
      h("h2", { id: "transform-title" }, "Batch transform jobs"),
      noJobs,
      h("div", { class: "scroll" }, h("table", { class: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Age", ""].map((c) => h("th", { scope: "col" }, c)))),
        jobsBody))),
    h("section", { "aria-labelledby": "queues-title" },
      h("h2", { id: "queues-title" }, "Async inference queues"),
      noQueues,
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Endpoint", "Backlog", "Oldest request", "Waiting for capacity"].map((c) => h("th", { scope: "col" }, c)))),
        queuesBody))),
  );

  function progressCell(job, progress) {
    if (!progress || !progress.ObjectsTotal) {
      return h("td", {}, ACTIVE.has(job.TransformJobStatus) ? "starting…" : "–");
    }
    const total = progress.BytesTotal || progress.ObjectsTotal;
    const done = progress.BytesTotal ? progress.BytesDone : progress.ObjectsDone;
    const percent = total ? Math.round((100 * done) / total) : 0;
    const id = `progress-${job.TransformJobName}`;
    const words = `${progress.ObjectsDone}/${progress.ObjectsTotal} objects, ${progress.RecordsDone} records` +
      (progress.EstimatedSecondsLeft !== undefined ? `, about ${Math.ceil(progress.EstimatedSecondsLeft)} s left` : "");
    return h("td", { class: "progress" },
      h("progress", { id, max: "100", value: String(percent), "aria-label": `Progress of ${job.TransformJobName}` }, `${percent}%`),
      h("span", { class: "muted" }, ` ${percent}% · ${words}`));
  }

  async function stopJob(name) {
    if (!(await confirmAction("Stop this transform job?", `${name}: outputs already written stay; the rest is dropped.`, "Stop job"))) return;
    try {
      await call("sagemaker", "StopTransformJob", { TransformJobName: name });
      toast(`Stopping ${name}`);
      refresh();
    } catch (error) {
      problem.replaceChildren(errorPanel(error));
    }
  }

  const finished = new Map(); // a finished job's last description: it no longer changes

  async function describe(job) {
    const name = job.TransformJobName;
    if (finished.has(name)) return finished.get(name);
    const described = await call("sagemaker", "DescribeTransformJob", { TransformJobName: name }).catch(() => null);
    if (described && !ACTIVE.has(described.TransformJobStatus)) finished.set(name, described);
    return described;
  }

  async function refreshJobs() {
    const page = await call("sagemaker", "ListTransformJobs", { MaxResults: 100, SortBy: "CreationTime", SortOrder: "Descending" });
    const jobs = page.TransformJobSummaries || [];
    const described = await Promise.all(jobs.map(describe));
    noJobs.hidden = jobs.length > 0;
    jobsBody.replaceChildren(...jobs.map((job, i) => h("tr", { dataset: { name: job.TransformJobName } },
      h("th", { scope: "row" }, job.TransformJobName),
      h("td", {}, statusBadge(job.TransformJobStatus), job.FailureReason ? h("div", { class: "failure" }, job.FailureReason) : null),
      progressCell(job, described[i] && described[i].MoorageProgress),
      h("td", { class: "num" }, age(job.CreationTime)),
      h("td", {}, job.TransformJobStatus === "InProgress"
        ? h("button", { type: "button", class: "danger small", onclick: () => stopJob(job.TransformJobName) }, "Stop")
        : null))));
  }

  async function refreshQueues() {
    const metrics = await prometheus();
    const backlog = gauge(metrics, "sagemaker_ApproximateBacklogSize");
    const oldest = gauge(metrics, "sagemaker_ApproximateAgeOfOldestRequest");
    const starved = gauge(metrics, "sagemaker_HasBacklogWithoutCapacity");
    noQueues.hidden = backlog.size > 0;
    queuesBody.replaceChildren(...[...backlog.keys()].sort().map((endpoint) => h("tr", {},
      h("th", { scope: "row" }, h("a", { href: `#/endpoints/${encodeURIComponent(endpoint)}` }, endpoint)),
      h("td", { class: "num" }, backlog.get(endpoint)),
      h("td", { class: "num" }, `${(oldest.get(endpoint) || 0).toFixed(1)} s`),
      h("td", {}, starved.get(endpoint) ? "yes" : "no"))));
  }

  async function refresh() {
    const results = await Promise.allSettled([refreshJobs(), refreshQueues()]);
    const failed = results.find((r) => r.status === "rejected");
    problem.replaceChildren(...(failed ? [errorPanel(failed.reason)] : []));
  }

  return every(REFRESH_MS, refresh);
}
