"use strict";
// Helpers the gateway's pages (/ and /search) and the control plane's console share.
const $ = (selector, root = document) => root.querySelector(selector);

// The service's error message of a failed response ({"error": {"code", "message"}}), else its status line.
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
