"use strict";
// The similar-image view (/search): pick, create or delete a collection, add images to it (in requests within the
// gateway's limits, GET /v1/limits), search it with an image, browse its images page by page and delete them.
// Needs common.js ($, errorText, showError) and header.js (gatewayFetch: the API key).
const PAGE = 24;  // images per page of the listing
const collection = () => $("#collection").value;
const images = (path = "") => `/v1/collections/${encodeURIComponent(collection())}/images${path}`;
let offset = 0;  // of the page shown
let count = 0;  // images in the collection when last shown
let limits = null;

async function call(path, options = {}) {
  const response = await gatewayFetch(path, options);
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
    if (keep && body.collections.some(item => item.name === keep)) picker.value = keep;
    offset = 0;
    await showInfo();
    await showImages();
  } catch (error) { showError($("#info"), error); }
}

async function showInfo() {
  $("#delete-collection").disabled = !collection();
  if (!collection()) { $("#info").textContent = "no collection yet: create one"; count = 0; return; }
  try {
    const c = await call(`/v1/collections/${encodeURIComponent(collection())}`);
    count = c.count;
    const reindex = c.reindexing_to ? `, re-indexing to version ${c.reindexing_to}` : "";
    $("#info").textContent = `${c.count} images, ${c.model} version ${c.model_version}, ${c.dim} dimensions, ` +
                             `${c.engine} engine${reindex}`;
  } catch (error) { showError($("#info"), error); }
}

// One tile: the stored model input, the name, the id, a score if any, and a delete button.
function tile(id, name, score) {
  const element = $("#tile-template").content.firstElementChild.cloneNode(true);
  const image = $("img", element);
  image.alt = name;
  image.src = images(`/${encodeURIComponent(id)}/thumbnail`);
  $(".name", element).textContent = name;
  $(".id", element).textContent = id;
  $(".score", element).textContent = score === undefined ? "" : `score ${score.toFixed(3)}`;
  $(".delete", element).addEventListener("click", () => deleteImage(id, name));
  return element;
}

async function showImages() {
  const grid = $("#images");
  grid.innerHTML = "";
  $("#previous").disabled = offset === 0;
  $("#next").disabled = offset + PAGE >= count;
  if (!collection()) { $("#page").textContent = ""; return; }
  try {
    const body = await call(images(`?offset=${offset}&limit=${PAGE}`));
    $("#page").textContent = body.images.length ?
      `${offset + 1}–${offset + body.images.length} of ${count}` : "no images";
    for (const item of body.images) grid.appendChild(tile(item.id, item.name));
  } catch (error) { showError(grid, error); }
}

async function page(step) {
  offset = Math.max(0, offset + step * PAGE);
  await showImages();
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

async function deleteCollection() {
  const name = collection();
  if (!name || !confirm(`Delete the collection ${name} and its ${count} images?`)) return;
  try {
    await call(`/v1/collections/${encodeURIComponent(name)}`, {method: "DELETE"});
    $("#hits").innerHTML = ""; $("#query").innerHTML = ""; $("#added").textContent = `deleted ${name}`;
    await loadCollections();
  } catch (error) { showError($("#info"), error); }
}

async function deleteImage(id, name) {
  if (!confirm(`Delete ${name} from ${collection()}?`)) return;
  try {
    await call(images(`/${encodeURIComponent(id)}`), {method: "DELETE"});
    for (const grid of [$("#hits"), $("#images")]) {
      for (const element of [...grid.children]) {
        if ($(".id", element).textContent === id) element.remove();
      }
    }
    $("#added").textContent = `deleted ${name}`;
    await showInfo();
    if (offset >= count && offset > 0) offset -= PAGE;
    await showImages();
  } catch (error) { showError($("#added"), error); }
}

async function addImages(files) {
  if (!files.length) return;
  try {
    limits = limits || await call("/v1/limits");
    const added = [], skipped = [];
    for (let start = 0; start < files.length; start += limits.max_images) {  // requests within the limit
      const form = new FormData();
      for (const file of files.slice(start, start + limits.max_images)) form.append("image", file, file.name);
      $("#added").textContent = `adding ${files.length} image(s)… ${start}/${files.length}`;
      const body = await call(images(), {method: "POST", body: form});
      const skippedAt = new Set(body.skipped.map(item => item.index));
      body.names.forEach((name, index) => (skippedAt.has(index) ? skipped : added).push(name));
      count = body.count;
    }
    $("#added").textContent = `added ${added.length}: ${added.join(", ")}` +
      (skipped.length ? `; ${skipped.length} already in: ${skipped.join(", ")}` : "") + ` (${count} in the collection)`;
    await showInfo();
    await showImages();
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
    const body = await call(`/v1/collections/${encodeURIComponent(collection())}/search?${params}`, {
      method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}});
    caption.textContent = `${body.results.length} nearest in ${body.collection} (${body.model} version ` +
                          `${body.model_version})`;
    const hits = $("#hits");
    hits.innerHTML = "";
    for (const hit of body.results) hits.appendChild(tile(hit.id, hit.name, hit.score));
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
$("#delete-collection").addEventListener("click", deleteCollection);
$("#collection").addEventListener("change", () => { offset = 0; showInfo().then(showImages); });
$("#previous").addEventListener("click", () => page(-1));
$("#next").addEventListener("click", () => page(1));
loadCollections();
setInterval(showInfo, 10000);
