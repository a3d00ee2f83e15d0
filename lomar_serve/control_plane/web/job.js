"use strict";
// One job (#/jobs/ID): state and progress, live training curves (the metrics endpoint, polled from where the last
// answer ended), its log as it grows, its evaluation report and the comparison with the serving version
// (report.js), and a deploy button for the version it produced. An ingest job: its counts instead of curves and
// report.

const LOG_KEEP_CHARS = 200000;  // the page keeps the end of a long log

view(/^#\/jobs\/([a-f0-9]+)$/, (container, id) => {
  const summary = el("section", {class: "panel job-summary"});
  const outcome = el("div", {class: "outcome", role: "status"});
  const curves = el("section", {class: "panel"}, el("h2", {text: "Training curves"}), el("div", {class: "charts"}));
  const log = el("pre", {class: "log"});
  const logPanel = el("section", {class: "panel"}, el("h2", {text: "Log"}), log);
  const evaluation = el("section", {class: "panel evaluation"}, el("h2", {text: "Evaluation"}),
                        el("p", {class: "muted", text: "written by the job's verification stage"}));
  container.append(el("p", {class: "crumbs"}, el("a", {href: "#/jobs", text: "jobs"}), ` / ${id}`), summary, outcome,
                   curves, evaluation, logPanel);

  let job = null, shown = "", reportShown = false;
  const charts = jobCharts($(".charts", curves));
  // Records by step (train, epochs) or epoch (val): a resumed run logs the steps after its checkpoint again.
  const metrics = {after: 0, done: false, train: new Map(), epochs: new Map(), val: new Map()};
  const logState = {offset: 0, done: false};

  const refresh = async () => {
    job = await api(`/v1/admin/jobs/${id}?tail=0`);
    if (ACTIVE_STATES.has(job.state)) { metrics.done = false; logState.done = false; }  // (again, if resumed)
    let serving = null;  // the serving version of the model the job made a version of
    if (job.model_version) {
      serving = (await api("/v1/admin/models")).models.find(m => m.model === job.model_name)?.serving_version;
    }
    const state = JSON.stringify([job, serving]);
    if (state !== shown) {  // unchanged: its buttons stay the same elements
      shown = state;
      showSummary(summary, job, serving, outcome, refresh);
      curves.hidden = evaluation.hidden = job.kind === "ingest";
    }
    if (!reportShown && reportReady(job)) {
      reportShown = true;
      showEvaluation(evaluation, job);
    }
  };
  poll(refresh, 2000);
  poll(async () => {
    if (metrics.done) return;
    const chunk = await api(`/v1/admin/jobs/${id}/metrics?after=${metrics.after}`);
    metrics.after = chunk.next;
    chunk.train.forEach(r => metrics.train.set(r.step, r));
    chunk.epochs.forEach(r => metrics.epochs.set(r.step, r));
    chunk.val.forEach(r => metrics.val.set(r.epoch, r));
    const fresh = chunk.train.length + chunk.epochs.length + chunk.val.length;
    if (fresh) charts.draw(metrics);
    if (!ACTIVE_STATES.has(chunk.state) && !fresh) metrics.done = true;  // ended, and everything read
  }, 1000);
  poll(async () => {
    if (logState.done) return;
    const terminal = job && !ACTIVE_STATES.has(job.state);
    const chunk = await api(`/v1/admin/jobs/${id}/log?offset=${logState.offset}`);
    logState.offset = chunk.offset;
    if (chunk.text) {
      const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
      log.textContent = (log.textContent + chunk.text).slice(-LOG_KEEP_CHARS);
      if (follow) log.scrollTop = log.scrollHeight;
    } else if (terminal) logState.done = true;
  }, 1000);
});

// The report exists once verification has run: a succeeded retrain job, or one that went on to deploy.
const reportReady = job => job.kind !== "ingest"
  && (job.state === "succeeded" || ["deploy", "done"].includes(job.stage));

function showSummary(box, job, serving, outcome, refresh) {
  let deploy = "";
  if (job.model_version && job.model_version === serving) {
    deploy = el("span", {class: "badge state-succeeded", text: `version ${job.model_version} serves`});
  } else if (job.model_version && job.state === "succeeded") {
    deploy = el("button", {type: "button", class: "primary", text: `deploy version ${job.model_version}`,
                           on: {click: () => deployVersion(job.model_name, job.model_version, outcome, refresh)}});
  }
  const ingest = job.metrics.ingest;
  const made = job.kind === "ingest" ? [
    ["collection", job.params.collection],
    ["images", ingest ? `${ingest.done} of ${ingest.files}: added ${ingest.added}, skipped ${ingest.skipped} ` +
                        `(already in), failed ${ingest.failed}` : "–"],
    ["images / s", ingest?.img_per_s ?? "–"]] : [
    ["model", el("span", {}, el("a", {href: `#/models/${encodeURIComponent(job.model_name)}`, text: job.model_name}),
                 job.model_version ? ` version ${job.model_version}` : " (no version yet)")],
    ["epochs", `${job.metrics.training?.epochs_done ?? 0} of ${job.params.epochs}`]];
  const facts = [
    ["state", el("span", {}, stateBadge(job.state), job.cancel_requested ? " (cancel requested)" : "")],
    ["stage", job.stage || "not started"],
    ["progress", el("span", {}, progressBar(job.progress), ` ${percent(job.progress, 1)}`)],
    ["time left", el("span", {class: "eta", text: eta(job)})],
    ["kind", job.kind], ...made,
    ["data", job.params.data_dir],
    ["created", when(job.created_at)], ["updated", when(job.updated_at)],
    ["worker", job.worker || "–"]];
  box.replaceChildren(
    el("h2", {text: `Job ${job.id}`}),
    el("dl", {class: "facts"}, facts.map(([name, value]) => [el("dt", {text: name}), el("dd", {}, value)])),
    job.message ? el("p", {class: job.state === "failed" ? "error" : "muted", text: job.message}) : "",
    el("div", {class: "actions"}, jobActions(job), deploy),
    el("details", {}, el("summary", {text: "request"}), el("pre", {text: JSON.stringify(job.params, null, 2)})));
}

// The four charts of a job, fed by its metrics records (GET .../metrics: train per logged step, epochs and val
// per epoch).
function jobCharts(container) {
  const loss = lineChart(container, {title: "loss", x: "step"});
  const accuracy = lineChart(container, {title: "validation accuracy (%)", x: "epoch"});
  const lr = lineChart(container, {title: "learning rate", x: "step"});
  const speed = lineChart(container, {title: "images / s", x: "step"});
  const points = (records, x, y) => [...records.values()].map(r => [x(r), r[y]]).sort((a, b) => a[0] - b[0]);
  const step = r => r.step, epoch = r => r.epoch + 1;  // epochs count from 0 in the records
  function draw({train, epochs, val}) {
    loss.draw([{name: "training", points: points(train, step, "loss")},
               {name: "epoch mean", points: points(epochs, step, "loss"), dots: true},
               {name: "validation", points: points(val, step, "loss"), dots: true}]);
    accuracy.draw([{name: "top-1", points: points(val, epoch, "top1"), dots: true},
                   {name: "top-5", points: points(val, epoch, "top5"), dots: true}]);
    lr.draw([{name: "learning rate", points: points(train, step, "lr")}]);
    speed.draw([{name: "images/s", points: points(train, step, "img_per_s")}]);
  }
  draw({train: new Map(), epochs: new Map(), val: new Map()});
  return {draw};
}
