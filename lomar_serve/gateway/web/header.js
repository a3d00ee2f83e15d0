"use strict";
// The header both gateway pages share (/ and /search): the readiness line (#status), refreshed every 10 s, the
// current page's link, and the API key (#api-key) that gatewayFetch sends. The key stays in this tab's
// sessionStorage (never in a URL or a cookie) and is needed where the gateway opens no scope (LOMAR_OPEN_SCOPES:
// by default, collection writes). Needs common.js ($).
const API_KEY_STORAGE = "lomar-api-key";

// fetch with the API key, when one is set, as a bearer header.
function gatewayFetch(path, options = {}) {
  const key = sessionStorage.getItem(API_KEY_STORAGE);
  const headers = new Headers(options.headers || {});
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return fetch(path, {...options, headers});
}

async function checkStatus() {
  const status = $("#status");
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    if (response.ok) {
      status.className = "status ok";
      status.textContent = "ready: " + Object.entries(body.models).map(([m, v]) => `${m} v${v}`).join(", ");
    } else { status.className = "status down"; status.textContent = body.error.message; }
  } catch (_) { status.className = "status down"; status.textContent = "gateway unreachable"; }
}

function keyField() {
  const input = document.createElement("input");
  input.id = "api-key";
  input.type = "password";
  input.autocomplete = "off";
  input.placeholder = "API key";
  input.title = "an API key (lomar keys create), kept in this tab only; needed for what the gateway does not open " +
                "to anyone, by default adding to and deleting collections";
  input.value = sessionStorage.getItem(API_KEY_STORAGE) || "";
  input.addEventListener("change", () => {
    const key = input.value.trim();
    if (key) sessionStorage.setItem(API_KEY_STORAGE, key); else sessionStorage.removeItem(API_KEY_STORAGE);
  });
  $("header nav").before(input);
}

for (const link of document.querySelectorAll("header nav a")) {
  if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
}
keyField();
checkStatus();
setInterval(checkStatus, 10000);
