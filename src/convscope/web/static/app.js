// convscope explorer: plain JavaScript over the JSON API under /api (no framework, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, layer: null, channel: null, layout: null, job: null, events: null, info: null };
// state.job and state.events: the tools' current job (the one Cancel stops) and its event stream

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

function guarded(fn) {
  return async (...args) => {
    try { showError(null); await fn(...args); } catch (error) { showError(error); }
  };
}

async function start() {
  const info = await api("/api/model");
  state.info = info;
  $("model-name").textContent = `${info.name} · ${info.input_size.join("x")} · ${info.device}`;
  for (const name of info.samples) $("sample").add(new Option(name, name));
  for (const name of info.styles) $("styles").add(new Option(name, name));
  for (const name of info.attributions) $("attribution-method").add(new Option(name, name));
  const classes = await api("/api/classes");
  $("classes").replaceChildren(...classes.map((c) => new Option(`${c.label} (${c.index})`, c.label)));
  const layers = await api("/api/layers");
  $("layers").replaceChildren(...layers.filter((l) => l.shape.length === 3).map(layerItem));
  await openSample($("sample").value);
}

function layerItem(layer) {
  const item = document.createElement("li");
  const field = layer.receptive_field ? ` rf ${layer.receptive_field.size}` : "";
  item.innerHTML = `<span class="name"></span> <span class="meta">${layer.shape.join("x")}${field}</span>`;
  item.querySelector(".name").textContent = layer.name;
  item.dataset.layer = layer.name;
  item.title = `${layer.kind}, ${layer.parameters} parameters`;
  item.addEventListener("click", guarded(() => selectLayer(layer.name)));
  return item;
}

async function openSample(name) {
  const opened = await api(`/api/images/sample/${encodeURIComponent(name)}`, { method: "POST" });
  await showImage(opened.id);
}

async function upload(file) {
  const opened = await api("/api/images", { method: "POST", body: file,
                                            headers: { "Content-Type": "application/octet-stream" } });
  await showImage(opened.id);
}

async function showImage(id) {
  state.image = id;
  $("image").src = `/api/images/${id}.png`;
  const predictions = await api(`/api/images/${id}/predictions?top=5`);
  $("predictions").replaceChildren(...predictions.map((p) => {
    const item = document.createElement("li");
    item.textContent = `${p.label} ${(100 * p.probability).toFixed(1)}%`;
    return item;
  }));
  if (state.layer) await selectLayer(state.layer);
}

async function selectLayer(name) {
  state.layer = name;
  for (const item of $("layers").children) item.classList.toggle("selected", item.dataset.layer === name);
  $("layer-name").textContent = name;
  const query = `layer=${encodeURIComponent(name)}`;
  state.layout = await api(`/api/images/${state.image}/activations?${query}`);
  $("activations").src = `/api/images/${state.image}/activations.png?${query}&t=${Date.now()}`;
  if (state.channel !== null && state.channel < state.layout.total_channels) await selectChannel(state.channel);
}

function tileAt(event) {
  const image = $("activations"), layout = state.layout;
  const scale = image.naturalWidth / image.clientWidth;
  const x = event.offsetX * scale, y = event.offsetY * scale;
  const tile = (image.naturalWidth - layout.padding) / layout.columns;
  const column = Math.floor(x / tile), row = Math.floor(y / tile);
  const index = row * layout.columns + column;
  return index >= 0 && index < layout.channels.length && column < layout.columns ? layout.channels[index] : null;
}

async function selectChannel(channel) {
  state.channel = channel;
  $("channel-view").hidden = false;
  $("channel-name").textContent = `${channel} of ${state.layer}`;
  const query = `layer=${encodeURIComponent(state.layer)}&channel=${channel}`;
  $("channel-map").src = `/api/images/${state.image}/channel.png?${query}`;
  $("channel-visual").removeAttribute("src");
  $("visual-caption").textContent = "optimized image (not computed yet)";
  const top = state.info.top_activations;
  const shown = top && top.layer === state.layer && top.channels.includes(channel);
  $("top-figure").hidden = !shown;
  if (shown) $("channel-top").src = `/api/top/${channel}.png`;
}

async function runJob(kind, body, onStatus) {
  const job = await api(`/api/jobs/${kind}`, { method: "POST", body: JSON.stringify(body),
                                               headers: { "Content-Type": "application/json" } });
  onStatus(job);
  const events = new EventSource(`/api/jobs/${job.id}/events`);
  events.onmessage = (message) => {
    const status = JSON.parse(message.data);
    onStatus(status);
    if (["done", "failed", "cancelled"].includes(status.state)) events.close();
    if (status.state === "failed") showError(status.message);
  };
  return events;
}

function showJob(status) {
  state.job = status.id;
  $("job-progress").value = status.progress;
  $("job-state").textContent = `${status.kind}: ${status.state}${status.message ? " — " + status.message : ""}`;
  $("job-frames").textContent = `${status.frames} frame(s)`;
  $("job-state").dataset.state = status.state;
  $("job-frames").dataset.frames = status.frames;
  if (status.frames > 0) $("job-frame").src = `/api/jobs/${status.id}/frame.png?number=-1&f=${status.frames}`;
}

function showVisualization(status) {
  if (status.frames > 0) $("channel-visual").src = `/api/jobs/${status.id}/frame.png?number=-1&f=${status.frames}`;
  const percent = Math.round(100 * status.progress);
  $("visual-caption").textContent = status.state === "done" ? "optimized image" : `optimizing… ${percent}%`;
}

function formBody(form) {
  const body = { image: state.image };
  for (const [key, value] of new FormData(form)) {
    if (value === "") continue;
    const type = form.elements[key].type;
    body[key] = type === "number" ? Number(value) : type === "checkbox" ? true : value;
  }
  return body;
}

function bind() {
  $("sample").addEventListener("change", guarded(() => openSample($("sample").value)));
  $("upload").addEventListener("change", guarded(() => upload($("upload").files[0])));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guarded(async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    await upload(event.dataTransfer.files[0]);
  }));
  $("layer-filter").addEventListener("input", () => {
    const text = $("layer-filter").value.toLowerCase();
    for (const item of $("layers").children) item.hidden = !item.dataset.layer.toLowerCase().includes(text);
  });
  $("activations").addEventListener("click", guarded(async (event) => {
    const channel = tileAt(event);
    if (channel !== null) await selectChannel(channel);
  }));
  $("visualize").addEventListener("click", guarded(() =>
    runJob("visualize", { layer: state.layer, channel: state.channel }, showVisualization)));
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#tabs button")) other.setAttribute("aria-selected", other === tab);
      for (const form of document.querySelectorAll("form.tab")) form.hidden = form.dataset.tab !== tab.dataset.tab;
    });
  }
  for (const form of document.querySelectorAll("form.tab")) {
    form.addEventListener("submit", guarded(async (event) => {
      event.preventDefault();
      $("job").hidden = false;
      if (state.events) state.events.close();
      state.events = await runJob(form.dataset.tab, formBody(form), showJob);
    }));
  }
  $("cancel").addEventListener("click", guarded(() => api(`/api/jobs/${state.job}`, { method: "DELETE" })));
}

bind();
start().catch(showError);
