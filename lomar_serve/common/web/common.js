"use strict";
// Helpers the gateway's pages (/ and /search) and the control plane's console share.
const $ = (selector, root = document) => root.querySelector(selector);

// What a failed response says: the service's {"error": {"code", "message"}}, else its status line.
async function errorOf(response) {
  try {
    const body = await response.json();
    if (body.error) return {status: response.status, code: body.error.code, message: body.error.message};
  } catch (_) { /* not JSON */ }
  return {status: response.status, code: "", message: `${response.status} ${response.statusText}`};
}

async function errorText(response) { return (await errorOf(response)).message; }

function showError(container, error) {
  container.innerHTML = "";
  const div = document.createElement("div");
  div.className = "error";
  div.textContent = error.message;
  container.appendChild(div);
}
