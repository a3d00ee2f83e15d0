"use strict";
// The similar-image view (/search): pick or create a collection, add images to it, search it with an image.
// Needs common.js ($, errorText, showError).
const collection = () => $("#collection").value;

async function call(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function loadCollections(select) {
  try {
    const body = await call("/v1/collections");
    const picker = $("#collection");
    const keep = select || picker.value;
    picker.innerHTML = "";
    for (const item of body.collections) {
      const option = document.createElement("option");
      option.value = item.name; option.textContent = item.name;
      picker.appendChild(option);
    }
    if (keep) picker.value = keep;
    await showInfo();
  } catch (error) { showError($("#info"), error); }
}

async function showInfo() {
  if (!collection()) { $("#info").textContent = "no collection yet: create one"; return; }
  try {
    const c = await call(`/v1/collections/${collection()}`);
    const reindex = c.reindexing_to ? `, re-indexing to version ${c.reindexing_to}` : "";
    $("#info").textContent = `${c.count} images, ${c.model} version ${c.model_version}, ${c.dim} dimensions, ` +
                             `${c.engine} engine${reindex}`;
  } catch (error) { showError($("#info"), error); }
}

async function create() {
  const name = $("#new-name").value.trim();
  try {
    await call("/v1/collections", {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify({name})});
    $("#new-name").value = "";
    await loadCollections(name);
  } catch (error) { showError($("#info"), error); }
}

async function addImages(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("image", file, file.name);
  $("#added").textContent = `adding ${files.length} image(s)…`;
  try {
    const body = await call(`/v1/collections/${collection()}/images`, {method: "POST", body: form});
    $("#added").textContent = `added ${body.ids.length}: ${body.ids.join(", ")} (${body.count} in the collection)`;
    await showInfo();
  } catch (error) { showError($("#added"), error); }
}

async function searchWith(file) {
  const query = $("#query");
  query.innerHTML = "";
  const image = document.createElement("img");
  image.src = URL.createObjectURL(file);
  const caption = document.createElement("div");
  caption.textContent = "searching…";
  query.append(image, caption);
  const params = new URLSearchParams({top_k: Math.max(1, parseInt($("#top-k").value, 10) || 8)});
  if ($("#threshold").value !== "") params.set("threshold", $("#threshold").value);
  try {
    const body = await call(`/v1/collections/${collection()}/search?${params}`, {
      method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}});
    caption.textContent = `${body.results.length} nearest in ${body.collection} (${body.model} version ` +
                          `${body.model_version})`;
    const hits = $("#hits");
    hits.innerHTML = "";
    for (const hit of body.results) {
      const card = document.createElement("div");
      card.className = "hit";
      const thumb = document.createElement("img");
      thumb.alt = hit.id;
      thumb.src = `/v1/collections/${body.collection}/images/${encodeURIComponent(hit.id)}/thumbnail`;
      const id = document.createElement("div"); id.className = "id"; id.textContent = hit.id;
      const score = document.createElement("div"); score.className = "score";
      score.textContent = `score ${hit.score.toFixed(3)}`;
      card.append(thumb, id, score);
      hits.appendChild(card);
    }
  } catch (error) { showError(caption, error); }
}

function zone(dropId, inputId, handle) {
  const area = $(dropId);
  $(inputId).addEventListener("change", event => { handle([...event.target.files]); event.target.value = ""; });
  area.addEventListener("dragover", event => { event.preventDefault(); area.classList.add("over"); });
  area.addEventListener("dragleave", () => area.classList.remove("over"));
  area.addEventListener("drop", event => { event.preventDefault(); area.classList.remove("over");
                                           handle([...event.dataTransfer.files]); });
}

zone("#search-drop", "#search-input", files => files.length && searchWith(files[0]));
zone("#add-drop", "#add-input", addImages);
$("#create").addEventListener("click", create);
$("#collection").addEventListener("change", showInfo);
loadCollections();
setInterval(showInfo, 10000);
