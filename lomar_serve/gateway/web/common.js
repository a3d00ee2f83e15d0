"use strict";
// What both pages share (/ and /search): helpers, and the header's readiness line (#status), refreshed every 10 s.
const $ = (selector, root = document) => root.querySelector(selector);

// The gateway's error message of a failed response ({"error": {"code", "message"}}), else its status line.
async function errorText(response) {
  try { const body = await response.json(); return body.error ? body.error.message : response.statusText; }
  catch (_) { return `${response.status} ${response.statusText}`; }
}

function showError(container, error) {
  container.innerHTML = "";
  const div = document.createElement("div");
  div.className = "error";
  div.textContent = error.message;
  container.appendChild(div);
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

for (const link of document.querySelectorAll("header nav a")) {
  if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
}
checkStatus();
setInterval(checkStatus, 10000);
