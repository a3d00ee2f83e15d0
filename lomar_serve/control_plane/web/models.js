"use strict";
// Models (#/models) and one model (#/models/NAME): serving version, versions on disk with their model cards,
// what each Triton has loaded, the latest canary or shadow rollout, the deploy history; deploy and roll back,
// confirmed first.

view(/^#\/models$/, async container => {
  const box = el("section", {class: "panel"}, el("h2", {text: "Models"}), el("p", {class: "busy", text: "loading…"}));
  container.append(box);
  try {
    const {models} = await api("/v1/admin/models");
    const rows = models.map(m => el("tr", {},
      el("td", {}, el("a", {href: `#/models/${encodeURIComponent(m.model)}`, text: m.model})),
      el("td", {class: "serving", text: m.serving_version ?? "none"}),
      el("td", {text: m.versions.join(", ") || "none"}),
      el("td", {text: m.deployed.join(" → ") || "–"}),
      el("td", {text: m.rollback_target ?? "–"})));
    box.lastChild.replaceWith(models.length
      ? table(["model", "serving", "versions on disk", "deployed (in order)", "rollback to"], rows, "models")
      : el("p", {text: "The model repository holds no model yet."}));
  } catch (error) { report(box, error); }
});

view(/^#\/models\/([^/]+)$/, (container, name) => {
  const box = el("section", {class: "panel"});
  const outcome = el("div", {class: "outcome", role: "status"});
  container.append(el("p", {class: "crumbs"}, el("a", {href: "#/models", text: "models"}), ` / ${name}`), outcome,
                    box);
  const refresh = () => showModel(box, name, outcome, refresh);
  refresh();
});

async function showModel(box, name, outcome, refresh) {
  let status;
  try { status = await api(`/v1/admin/models/${encodeURIComponent(name)}`); }
  catch (error) { report(box, error); return; }
  box.innerHTML = "";
  const rollback = el("button", {type: "button", text: `roll back to version ${status.rollback_target}`,
                                 on: {click: () => rollBack(name, outcome, refresh)}});
  box.append(el("h2", {text: name}),
             el("p", {}, "serving version ", el("strong", {class: "serving", text: status.serving_version ?? "none"}),
                status.rollback_target ? rollback : ""));
  const loaded = Object.entries(status.loaded).map(([url, versions]) => el("tr", {},
    el("td", {text: url}), el("td", {text: versions === null ? "unreachable" : versions.join(", ") || "none"})));
  box.append(el("h3", {text: "Tritons"}), table(["Triton", "versions loaded and ready"], loaded));

  const versions = [...status.versions].reverse().map(version => {
    const card = status.cards?.[version];
    const serving = version === status.serving_version;
    const deploy = el("button", {type: "button", text: "deploy", class: "primary",
                                 on: {click: () => deployVersion(name, version, outcome, refresh)}});
    return el("tr", {class: serving ? "current" : ""},
      el("td", {}, el("strong", {text: version}),
         serving ? el("span", {class: "badge state-succeeded", text: "serving"}) : ""),
      el("td", {}, cardSummary(card)),
      el("td", {}, serving ? "" : deploy));
  });
  box.append(el("h3", {text: "Versions on disk"}), table(["version", "model card", ""], versions, "versions"));

  if (status.rollout) box.append(...rolloutSection(name, status.rollout, outcome, refresh));

  const history = [...status.history].reverse().map(event => el("tr", {},
    el("td", {text: when(event.at)}), el("td", {text: event.action}), el("td", {text: event.version}),
    el("td", {text: event.previous ?? "–"})));
  box.append(el("h3", {text: "Deploy history"}),
             history.length ? table(["when", "action", "version", "previous"], history, "history")
                            : el("p", {class: "muted", text: "no deploy yet"}));
}

// The model's latest canary or shadow rollout (docs/rollouts.md): its state, step and why, each guard's verdict on
// the figures the gateways reported; promote or abort while it runs.
function rolloutSection(name, rollout, outcome, refresh) {
  const active = ["running", "promoting"].includes(rollout.state);
  const action = (verb, question) => el("button", {type: "button", text: verb, on: {click: async () => {
    if (!await confirmAction(question, verb)) return;
    try { await api(`/v1/admin/models/${encodeURIComponent(name)}/rollout/${verb}`, {method: "POST"}); }
    catch (error) { report(outcome, error); }
    refresh();
  }}});
  const checks = (rollout.checks || []).map(check => el("tr", {class: `check-${check.status}`},
    el("td", {text: check.guard}), el("td", {text: check.status}),
    el("td", {text: check.value === null ? "–" : String(Number(check.value.toPrecision(4)))}),
    el("td", {text: check.limit === null ? "–" : String(check.limit)}), el("td", {text: String(check.samples)}),
    el("td", {text: check.detail})));
  return [el("h3", {text: `${rollout.mode} rollout of version ${rollout.candidate}`}),
          el("p", {}, el("span", {class: `badge rollout-${rollout.state}`, text: rollout.state}),
             ` step ${rollout.step + 1} of ${rollout.steps.length}: ${rollout.percent} % of requests` +
             ` (baseline version ${rollout.baseline}) `,
             active ? action("promote", `Deploy version ${rollout.candidate} of ${name} to every request now?`) : "",
             active ? action("abort", `Send every request of ${name} back to version ${rollout.baseline}?`) : ""),
          el("p", {class: "muted", text: rollout.reason}),
          checks.length ? table(["guard", "verdict", "measured", "limit", "samples", ""], checks, "checks")
                        : el("p", {class: "muted", text: "no figures reported yet"})];
}

function cardSummary(card) {
  if (!card) return el("span", {class: "muted", text: "no readable model card"});
  const facts = [card.task, card.classes.length ? `${card.classes.length} classes` : "",
                 `${card.format} ${card.precision} on ${card.backend}`,
                 `${card.image_size.join("×")} px`, `from ${card.source_checkpoint}`,
                 card.exported_at ? `exported ${card.exported_at.replace("T", " ").replace("+00:00", " UTC")}` : ""];
  const details = el("details", {}, el("summary", {text: facts.filter(Boolean).join(" · ")}));
  if (card.classes.length) {
    details.append(el("p", {}, el("strong", {text: `${card.classes.length} classes: `}), card.classes.join(", ")));
  }
  const architecture = Object.entries(card.architecture || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  details.append(el("p", {class: "muted", text: `architecture: ${architecture}`}),
                 el("p", {class: "muted", text: `parity: ${JSON.stringify(card.parity)}`}));
  return details;
}

// What a deploy or rollback answered, in words and figures.
function showSwitch(outcome, answer) {
  const facts = [`${answer.model} serves version ${answer.version}`,
                 `previous: ${answer.previous ?? "none"}`, `changed: ${answer.changed}`,
                 answer.seconds !== null && answer.seconds !== undefined ? `${answer.seconds.toFixed(1)} s` : ""];
  outcome.innerHTML = "";
  outcome.className = "outcome ok";
  outcome.append(el("strong", {text: facts.filter(Boolean).join(" · ")}),
                 answer.message ? el("div", {text: answer.message}) : "",
                 answer.recorded === false ? el("div", {text: "not yet in the deploy history: the reconcile loop " +
                                                               "records it when the job store answers"}) : "");
}

async function deployVersion(name, version, outcome, after) {
  if (!await confirmAction(`Deploy version ${version} of ${name}? Every Triton loads it and runs a smoke test; ` +
                           "then every gateway sends requests to it.", `deploy version ${version}`)) return;
  outcome.className = "outcome busy";
  outcome.textContent = `deploying version ${version} of ${name}…`;
  try { showSwitch(outcome, await api(`/v1/admin/models/${encodeURIComponent(name)}/deploy`,
                                      {method: "POST", body: {version: Number(version)}})); }
  catch (error) { outcome.className = "outcome"; report(outcome, error); }
  if (after) after();
}

async function rollBack(name, outcome, after) {
  if (!await confirmAction(`Roll ${name} back to the version deployed before the serving one?`, "roll back")) return;
  outcome.className = "outcome busy";
  outcome.textContent = `rolling ${name} back…`;
  try { showSwitch(outcome, await api(`/v1/admin/models/${encodeURIComponent(name)}/rollback`, {method: "POST"})); }
  catch (error) { outcome.className = "outcome"; report(outcome, error); }
  if (after) after();
}
