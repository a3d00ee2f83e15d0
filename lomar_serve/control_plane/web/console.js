"use strict";
// The console's core: the admin token, calls to the admin API, the views (#/models, #/jobs, #/jobs/ID, #/keys),
// their polling, and small DOM helpers. Needs common.js ($, errorOf, showError).
//
// The token lives in this tab's sessionStorage and travels only as an Authorization header: never in a URL, a
// cookie or the page. A 401, or a 403 saying the token is wrong, logs out with the server's message.

const TOKEN_KEY = "lomar.console.adminToken";
const AUTH_CODES = new Set(["unauthorized", "forbidden", "admin_disabled"]);  // 401/403 about the token itself
const routes = [];  // [pattern, render(view, ...groups)]
let current = null;  // the shown view's state: {active, timers}

class LoggedOut extends Error {}

const token = () => sessionStorage.getItem(TOKEN_KEY);

// A call to the admin API; the parsed JSON (or the Blob with `blob`). Throws Error(the server's message), or
// LoggedOut after showing the login form when the token is refused.
async function api(path, {method = "GET", body, blob = false} = {}) {
  if (!token()) { logout(""); throw new LoggedOut("logged out"); }
  const headers = {Authorization: `Bearer ${token()}`};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, cache: "no-store", credentials: "omit",
                                      body: body === undefined ? undefined : JSON.stringify(body)});
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 || (response.status === 403 && AUTH_CODES.has(error.code))) {
      logout(error.message);
      throw new LoggedOut(error.message);
    }
    throw Object.assign(new Error(error.message), {status: error.status, code: error.code});
  }
  return blob ? response.blob() : response.json();
}

// Show an error in `container` unless it is a log-out (the login form says why).
function report(container, error) {
  if (!(error instanceof LoggedOut)) showError(container, error);
}

// -- DOM ------------------------------------------------------------------------------------------------------
// el("a", {href: "#/jobs", class: "x", text: "jobs"}, child, ...): children are nodes or strings (as text).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function table(headings, rows, className = "") {
  return el("table", {class: className},
            el("thead", {}, el("tr", {}, headings.map(text => el("th", {text})))),
            el("tbody", {}, rows));
}

function progressBar(fraction) {
  const fill = el("span");
  fill.style.width = `${(100 * Math.max(0, Math.min(1, fraction || 0))).toFixed(1)}%`;
  return el("span", {class: "progress", title: percent(fraction)}, fill);
}

const stateBadge = state => el("span", {class: `badge state-${state}`, text: state});
const percent = (fraction, digits = 0) => `${(100 * (fraction || 0)).toFixed(digits)}%`;
const number = (value, digits = 3) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

function when(unixSeconds) {
  if (!unixSeconds) return "–";
  return new Date(unixSeconds * 1000).toLocaleString(undefined, {dateStyle: "short", timeStyle: "medium"});
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// A confirmation in the page's own dialog; resolves to true when confirmed.
function confirmAction(text, action = "confirm") {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise(resolve => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"),
                                                         {once: true}));
}

// -- views and polling ----------------------------------------------------------------------------------------
function view(pattern, render) { routes.push([pattern, render]); }

// Run `task` now and again `ms` after each run ends, while the view that started it is shown.
function poll(task, ms) {
  const state = current;
  const run = async () => {
    if (!state.active) return;
    try { await task(); } catch (error) { if (error instanceof LoggedOut) return; console.error(error); }
    if (state.active) state.timers.push(setTimeout(run, ms));
  };
  run();
}

function leaveView() {
  if (current) { current.active = false; current.timers.forEach(clearTimeout); }
  current = {active: true, timers: []};
}

function route() {
  leaveView();
  const container = $("#view");
  container.innerHTML = "";
  if (!token()) { logout(""); return; }
  $("#login").hidden = true;
  $("#nav").hidden = false;
  const hash = location.hash || "#/jobs";
  for (const link of document.querySelectorAll("#nav a[href^='#']")) {
    link.classList.toggle("current", hash.startsWith(link.getAttribute("href")));
  }
  for (const [pattern, render] of routes) {
    const match = hash.match(pattern);
    if (match) { render(container, ...match.slice(1).map(decodeURIComponent)); return; }
  }
  container.append(el("p", {class: "error", text: `no page ${hash}`}));
}

// -- log in and out -------------------------------------------------------------------------------------------
function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  leaveView();
  $("#view").innerHTML = "";
  $("#nav").hidden = true;
  $("#login").hidden = false;
  $("#login-message").textContent = message;
  $("#token").focus();
}

async function login(event) {
  event.preventDefault();
  const field = $("#token");
  const typed = field.value.trim();
  field.value = "";  // not kept in the page
  if (!typed) return;
  sessionStorage.setItem(TOKEN_KEY, typed);
  try {
    await api("/v1/admin/models");  // a refused token logs out again with the reason
    $("#login-message").textContent = "";
    route();
  } catch (error) {
    if (!(error instanceof LoggedOut)) { $("#login-message").textContent = error.message; }
  }
}

async function checkHealth() {
  const status = $("#status");
  try {
    const response = await fetch("/readyz", {cache: "no-store"});
    status.className = response.ok ? "status ok" : "status down";
    status.textContent = response.ok ? "control plane ready" : (await errorOf(response)).message;
  } catch (_) { status.className = "status down"; status.textContent = "control plane unreachable"; }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout("logged out"));
  window.addEventListener("hashchange", route);
  checkHealth();
  setInterval(checkHealth, 15000);
  if (token()) route(); else logout("");
});
