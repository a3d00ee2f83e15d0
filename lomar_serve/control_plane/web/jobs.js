"use strict";
// Jobs (#/jobs): the list with state, stage, progress and ETA, refreshed while shown; cancel and resume; the form
// that submits a retrain job (its choices from GET /v1/admin/job-form) and the one that submits an ingest job.

const ACTIVE_STATES = new Set(["queued", "running"]);
const CANCELLABLE = new Set(["queued", "running", "interrupted"]);
const RESUMABLE = new Set(["interrupted", "failed", "cancelled"]);

view(/^#\/jobs$/, container => {
  const list = el("section", {class: "panel"}, el("h2", {text: "Jobs"}), el("div", {class: "jobs"}));
  const form = el("section", {class: "panel"});
  const ingest = el("section", {class: "panel"});
  container.append(list, form, ingest);
  ingestForm(ingest);
  let jobs = [];
  poll(async () => {
    try { jobs = (await api("/v1/admin/jobs?limit=50")).jobs; showJobs($(".jobs", list), jobs); }
    catch (error) { report($(".jobs", list), error); throw error; }
  }, 2000);
  jobForm(form, () => jobs);
});

// What a job makes: a version of a model, or (an ingest job) images in a collection.
const jobTarget = job => (job.kind === "ingest" ? `collection ${job.params.collection}`
                          : `${job.model_name}${job.model_version ? " v" + job.model_version : ""}`);

// A job's remaining time: the record's estimate while it trains or ingests.
const eta = job => (job.state === "running" && job.eta_s !== null ? duration(job.eta_s) : "–");

function showJobs(box, jobs) {
  if (!jobs.length) { box.replaceChildren(el("p", {class: "muted", text: "No job yet: submit one below."})); return; }
  const rows = jobs.map(job => el("tr", {"data-job": job.id},
    el("td", {}, el("a", {href: `#/jobs/${job.id}`, text: job.id.slice(0, 8)})),
    el("td", {text: job.kind}),
    el("td", {}, stateBadge(job.state), job.cancel_requested ? " cancelling" : ""),
    el("td", {text: job.stage || "–"}),
    el("td", {class: "progress-cell"}, progressBar(job.progress), ` ${percent(job.progress)}`),
    el("td", {class: "eta", text: eta(job)}),
    el("td", {text: jobTarget(job)}),
    el("td", {text: when(job.created_at)}),
    el("td", {}, jobActions(job))));
  box.replaceChildren(table(["job", "kind", "state", "stage", "progress", "ETA", "model or collection", "created",
                             ""], rows, "jobs"));
}

// Cancel and resume buttons for the states that allow them (the page's polling shows what they did).
function jobActions(job) {
  const out = el("span", {class: "actions"});
  const act = async (verb, question) => {
    if (!await confirmAction(question, verb)) return;
    try { await api(`/v1/admin/jobs/${job.id}/${verb}`, {method: "POST"}); }
    catch (error) { report(out, error); }
  };
  if (CANCELLABLE.has(job.state) && !job.cancel_requested) {
    out.append(el("button", {type: "button", text: "cancel",
                             on: {click: () => act("cancel", `Cancel job ${job.id}?`)}}));
  }
  if (RESUMABLE.has(job.state)) {
    out.append(el("button", {type: "button", text: "resume",
                             on: {click: () => act("resume", `Resume job ${job.id} from its last checkpoint?`)}}));
  }
  return out;
}

// -- the form -------------------------------------------------------------------------------------------------
async function jobForm(box, jobs) {
  box.append(el("h2", {text: "New job"}), el("p", {class: "busy", text: "loading…"}));
  let form;
  try { form = await api("/v1/admin/job-form"); } catch (error) { report(box, error); return; }
  box.lastChild.remove();
  const datasets = el("datalist", {id: "datasets"}, form.datasets.map(d => el("option", {value: d.path})));
  const classes = el("div", {class: "hint classes"});
  const f = el("form", {class: "job-form", method: "post", action: "/", autocomplete: "off"},
    field("kind", el("select", {name: "kind"}, el("option", {value: "finetune", text: "fine-tune a classifier"}),
                                el("option", {value: "pretrain", text: "pretrain a reconstruction model"}))),
    field("data folder", el("input", {name: "data_dir", list: "datasets", required: true, size: 40,
                                      placeholder: form.datasets[0]?.path ?? "a folder inside the data roots"}),
          `under ${form.data_roots.join(", ") || "no data root (LOMAR_DATA_ROOTS is unset)"}`),
    classes, datasets,
    field("start from", el("select", {name: "start"},
      el("option", {value: "model", text: "a new model of an architecture"}),
      el("option", {value: "from_job", text: "an earlier job's model"}),
      el("option", {value: "init", text: "a checkpoint file"}))),
    field("architecture", el("select", {name: "model"}, form.architectures.map(a => el("option", {value: a, text: a}))),
          "", "start-model"),
    field("model options", el("input", {name: "model_options", placeholder: "depth=2", size: 30}),
          "architecture overrides, KEY=VALUE separated by spaces", "start-model"),
    field("earlier job", el("select", {name: "from_job"}), "", "start-from_job"),
    field("checkpoint", el("input", {name: "init", size: 40, placeholder: "path inside the data roots"}), "",
          "start-init"),
    field("Triton model", el("input", {name: "model_name", placeholder: form.model_names.finetune, size: 24})),
    field("epochs", el("input", {name: "epochs", type: "number", min: 1, value: 5, required: true})),
    el("fieldset", {class: "options"}, el("legend", {text: "training settings (empty: the default)"})),
    field("more settings", el("input", {name: "more", size: 50, placeholder: "KEY=VALUE KEY=VALUE"}), "", "more"),
    el("label", {class: "check"}, el("input", {name: "auto_deploy", type: "checkbox"}),
       "deploy the new version when its evaluation is at least as good as the serving version's"),
    el("div", {class: "actions"}, el("button", {type: "submit", class: "primary", text: "submit job"})),
    el("div", {class: "form-message", role: "alert"}));
  box.append(f);

  const kind = () => f.elements.kind.value;
  const options = () => Object.fromEntries(form.options[kind()].map(o => [o.name, o]));
  const refreshKind = () => {  // the settings of this kind of job, with their defaults
    const fieldset = $(".options", f);
    fieldset.querySelectorAll("label").forEach(label => label.remove());
    for (const option of form.options[kind()].filter(o => o.common)) fieldset.append(optionField(option));
    f.elements.model_name.placeholder = form.model_names[kind()];
  };
  const refreshStart = () => {
    for (const start of ["model", "from_job", "init"]) {
      f.querySelectorAll(`.start-${start}`).forEach(label => { label.hidden = f.elements.start.value !== start; });
    }
    if (f.elements.start.value !== "from_job") return;
    const earlier = jobs().filter(j => j.state === "succeeded");  // the jobs that left a model
    f.elements.from_job.replaceChildren(...earlier.map(j => el("option", {value: j.id,
      text: `${j.id.slice(0, 8)} · ${j.kind} · ${jobTarget(j)}`})));
  };
  const refreshClasses = () => {
    const found = form.datasets.find(d => d.path === f.elements.data_dir.value.trim());
    const splits = found?.splits ? " · train/ and val/" : " · no val/: validated on its training images";
    classes.textContent = found ? `${found.classes.length} classes: ${found.classes.join(", ")}${splits}` : "";
  };
  f.elements.kind.addEventListener("change", refreshKind);
  f.elements.start.addEventListener("change", refreshStart);
  f.elements.data_dir.addEventListener("input", refreshClasses);
  refreshKind(); refreshStart();
  f.addEventListener("submit", async event => {
    event.preventDefault();
    const message = $(".form-message", f);
    message.textContent = "";
    let request;
    try { request = jobRequest(f, options()); } catch (error) { showError(message, error); return; }
    try {
      const job = await api("/v1/admin/jobs", {method: "POST", body: request});
      location.hash = `#/jobs/${job.id}`;
    } catch (error) { report(message, error); }
  });
}

// An ingest job: a worker adds every image of a folder to a collection, through a gateway.
function ingestForm(box) {
  const f = el("form", {class: "ingest-form", method: "post", action: "/", autocomplete: "off"},
    field("image folder", el("input", {name: "data_dir", required: true, size: 40,
                                       placeholder: "a folder inside the data roots"}),
          "every image below it, named by its path in the folder"),
    field("collection", el("input", {name: "collection", required: true, size: 24,
                                     placeholder: "photos"})),
    el("label", {class: "check"}, el("input", {name: "create", type: "checkbox", checked: true}),
       "create the collection if it does not exist"),
    field("known bytes", el("select", {name: "on_duplicate"},
      el("option", {value: "skip", text: "skip an image whose bytes are in already"}),
      el("option", {value: "replace", text: "replace that image"}),
      el("option", {value: "add", text: "add it again"}))),
    el("div", {class: "actions"}, el("button", {type: "submit", class: "primary", text: "add the folder"})),
    el("div", {class: "form-message", role: "alert"}));
  box.append(el("h2", {text: "Add a folder to a collection"}), f);
  f.addEventListener("submit", async event => {
    event.preventDefault();
    const value = name => f.elements[name].value.trim();
    const request = {kind: "ingest", data_dir: value("data_dir"), collection: value("collection"),
                     create: f.elements.create.checked, on_duplicate: value("on_duplicate")};
    try {
      const job = await api("/v1/admin/jobs", {method: "POST", body: request});
      location.hash = `#/jobs/${job.id}`;
    } catch (error) { report($(".form-message", f), error); }
  });
}

function field(label, input, hint = "", className = "") {
  return el("label", {class: className}, el("span", {text: label}), input,
            hint ? el("small", {class: "hint", text: hint}) : "");
}

function optionField(option) {
  const title = `${option.help} (default ${option.default})`;
  let input;
  if (option.type === "bool" || option.choices.length) {
    const values = option.type === "bool" ? ["true", "false"] : option.choices;
    input = el("select", {name: `option.${option.name}`, title},
               el("option", {value: "", text: `default (${option.default})`}),
               values.map(v => el("option", {value: v, text: v})));
  } else {
    input = el("input", {name: `option.${option.name}`, title, size: 8, placeholder: String(option.default ?? "auto"),
                         type: option.type === "str" ? "text" : "number",
                         step: option.type === "float" ? "any" : option.type === "int" ? 1 : undefined});
  }
  return field(option.name, input, "", "option");
}

// "a", "true", "3", "0.5" -> the type the setting takes; an unknown setting stays a string (the server says).
function typed(option, text) {
  if (!option || option.type === "str") return text;
  if (option.type === "bool") {
    if (text !== "true" && text !== "false") throw new Error(`${option.name} is true or false, not ${text}`);
    return text === "true";
  }
  const value = Number(text);
  if (text === "" || !isFinite(value)) throw new Error(`${option.name} must be a number, not ${text}`);
  return value;
}

function pairs(text, what) {
  return text.split(/\s+/).filter(Boolean).map(pair => {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error(`${what}: write KEY=VALUE, not ${pair}`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  });
}

// The JobRequest body the form describes.
function jobRequest(f, options) {
  const value = name => f.elements[name].value.trim();
  const request = {kind: value("kind"), data_dir: value("data_dir"), epochs: Number(value("epochs")),
                   auto_deploy: f.elements.auto_deploy.checked, options: {}};
  const start = value("start");
  if (start === "model") {
    request.model = value("model");
    request.model_options = Object.fromEntries(pairs(value("model_options"), "model options").map(
      ([k, v]) => [k, v === "true" || v === "false" ? v === "true" : isFinite(Number(v)) && v !== "" ? Number(v) : v]));
  } else if (start === "from_job") {
    if (!value("from_job")) throw new Error("no earlier job to start from: pick another starting point");
    request.from_job = value("from_job");
  } else {
    request.init = value("init");
  }
  if (value("model_name")) request.model_name = value("model_name");
  for (const input of f.querySelectorAll("[name^='option.']")) {
    const name = input.name.slice("option.".length);
    if (input.value.trim() !== "") request.options[name] = typed(options[name], input.value.trim());
  }
  for (const [name, text] of pairs(value("more"), "more settings")) request.options[name] = typed(options[name], text);
  return request;
}
