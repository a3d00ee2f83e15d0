"use strict";
// A job's evaluation report (GET /v1/admin/jobs/ID/report): top-1/top-5, precision and recall per class, the
// confusion matrix as a heat map, the worst mistakes with their thumbnails; and the comparison with the serving
// version (GET .../compare): both reports side by side, the images on which they disagree.

async function showEvaluation(box, job) {
  const body = el("div", {class: "busy", text: "loading the report…"});
  box.replaceChildren(el("h2", {text: "Evaluation"}), body);
  let evaluation;
  try { evaluation = await api(`/v1/admin/jobs/${job.id}/report`); } catch (error) { report(body, error); return; }
  body.replaceWith(
    el("p", {class: "muted", text: `${evaluation.model} version ${evaluation.version} on ${evaluation.count} ` +
                                   `held-out images of ${evaluation.data_dir}`}),
    reportView(job.id, evaluation, "report"),
    el("div", {class: "compare"}, el("button", {type: "button", text: "compare with the serving version",
                                                on: {click: event => showComparison(event.target.parentNode, job)}})));
}

function headline(report) {
  if (report.metric !== "top1") {
    return el("div", {class: "headline"}, figure("masked MSE", number(report.value, 4)),
              figure("images", report.count));
  }
  return el("div", {class: "headline"},
            figure("top-1", `${number(report.top1, 1)}%`), figure("top-5", `${number(report.top5, 1)}%`),
            figure("images", report.count), figure("mistakes", report.mistake_count));
}

const figure = (name, value) => el("div", {class: "figure"}, el("strong", {text: String(value)}),
                                   el("span", {text: name}));

// One version's report; `name` tells its parts apart in the page ("report", "candidate", "baseline").
function reportView(jobId, report, name) {
  const view = el("div", {class: `report ${name}`}, headline(report));
  if (report.classes.length) {
    view.append(el("h3", {text: "Per class"}), el("div", {class: "scroll"}, classTable(report.classes)));
  }
  if (report.confusion) view.append(el("h3", {text: "Confusion matrix"}), confusionMatrix(report.confusion));
  if (report.mistakes.length) {
    view.append(el("h3", {text: `Worst mistakes (${report.mistakes.length} of ${report.mistake_count})`}),
                el("div", {class: "thumbs mistakes"}, report.mistakes.map(m => thumbCard(jobId, m.thumbnail, m.path, [
                  el("div", {}, "true ", el("strong", {text: m.label})),
                  el("div", {class: "wrong"}, `said ${m.predicted} `, el("span", {text: percent(m.confidence)}))]))));
  }
  return view;
}

function ratioCell(value) {
  if (value === null || value === undefined) return el("td", {class: "muted", text: "–"});
  return el("td", {class: "ratio"}, progressBar(value), ` ${percent(value)}`);
}

function classTable(classes) {
  return table(["class", "images", "predicted", "right", "precision", "recall"], classes.map(c => el("tr", {},
    el("td", {text: c.label}), el("td", {text: c.support}), el("td", {text: c.predicted}), el("td", {text: c.correct}),
    ratioCell(c.precision), ratioCell(c.recall))), "classes");
}

// Rows: the true labels; columns: the predicted ones; each cell shaded by its share of its row.
function confusionMatrix(confusion) {
  const head = el("tr", {}, el("th", {class: "corner", text: "true \\ predicted"}), confusion.predicted_labels.map(
    label => el("th", {class: "col", title: label}, el("span", {text: label}))));
  const rows = confusion.counts.map((counts, i) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return el("tr", {}, el("th", {text: confusion.labels[i]}), counts.map((count, j) => {
      const right = confusion.labels[i] === confusion.predicted_labels[j];
      const cell = el("td", {class: right ? "diagonal" : "", text: count || "",
                             title: `${confusion.labels[i]} → ${confusion.predicted_labels[j]}: ${count}`});
      const share = count / total;
      if (count) cell.style.background = right ? `rgba(30, 142, 62, ${0.1 + 0.8 * share})`
                                               : `rgba(179, 38, 30, ${0.1 + 0.8 * share})`;
      if (share > 0.55) cell.style.color = "#fff";
      return cell;
    }));
  });
  return el("div", {class: "scroll"}, el("table", {class: "confusion"}, el("thead", {}, head), el("tbody", {}, rows)));
}

// A thumbnail (fetched with the token: an <img> cannot send it) with its path and a caption.
function thumbCard(jobId, thumbnail, path, caption) {
  const image = el("img", {alt: path});
  if (thumbnail) {
    api(`/v1/admin/jobs/${jobId}/thumbnails/${encodeURIComponent(thumbnail)}`, {blob: true})
      .then(blob => { image.src = URL.createObjectURL(blob); })
      .catch(() => { image.alt = `${path} (no thumbnail)`; });
  }
  return el("figure", {class: "thumb"}, image, el("figcaption", {}, el("div", {class: "path", text: path}), caption));
}

async function showComparison(box, job) {
  box.replaceChildren(el("p", {class: "busy", text: "scoring both versions on the same images…"}));
  let comparison;
  try { comparison = await api(`/v1/admin/jobs/${job.id}/compare`); } catch (error) { report(box, error); return; }
  const {candidate, baseline} = comparison;
  if (!baseline) {
    box.replaceChildren(el("p", {class: "muted", text: "No other version serves: nothing to compare with."}));
    return;
  }
  const verdict = comparison.not_worse ? `version ${candidate.version} is at least as good as the serving version`
                                       : `version ${candidate.version} is worse than the serving version`;
  const since = comparison.baseline_is_serving ? "" : ` (version ${baseline.version} served when the job was ` +
    `verified; version ${comparison.serving_version ?? "none"} serves now)`;
  box.replaceChildren(
    el("h3", {text: `Compared with the serving version ${baseline.version}`}),
    el("p", {class: comparison.not_worse ? "good" : "error", text: verdict + since}),
    el("div", {class: "side-by-side"},
       el("div", {}, el("h4", {text: `this job: version ${candidate.version}`}),
          reportView(job.id, candidate, "candidate")),
       el("div", {}, el("h4", {text: `serving: version ${baseline.version}`}),
          reportView(job.id, baseline, "baseline"))),
    el("h3", {text: `Images on which they disagree (${comparison.disagreements.length} of ` +
                    `${comparison.disagreement_count})`}),
    comparison.disagreements.length
      ? el("div", {class: "thumbs disagreements"}, comparison.disagreements.map(d => thumbCard(job.id, d.thumbnail,
          d.path, [el("div", {}, "true ", el("strong", {text: d.label})),
                   verdictLine(`v${candidate.version}`, d.candidate, d.candidate_confidence, d.label),
                   verdictLine(`v${baseline.version}`, d.baseline, d.baseline_confidence, d.label)])))
      : el("p", {class: "muted", text: "They agree on every image."}));
}

function verdictLine(who, label, confidence, truth) {
  return el("div", {class: label === truth ? "right" : "wrong"}, `${who}: ${label} `,
            el("span", {text: percent(confidence)}));
}
