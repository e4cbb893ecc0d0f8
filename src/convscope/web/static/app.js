// convscope explorer: plain JavaScript over the JSON API under /api (no framework, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, layer: null, channel: null, start: 0, layout: null, info: null, live: null };
const FINISHED = ["done", "failed", "cancelled"];
// One line per attribution method, shown under the method menu and in the help.
const METHODS = {
  "gradient": "the gradient of the class score: pixels whose change moves the score most",
  "deconvnet": "the gradient with ReLUs passing only positive signals backward (Zeiler & Fergus)",
  "guided": "guided backpropagation: sharp edges the class score depends on",
  "gradcam": "Grad-CAM: which regions of the last feature maps support the class",
  "gradcam++": "Grad-CAM++: Grad-CAM weighted for several instances of the class",
  "hirescam": "HiResCAM: activations times gradients, position by position",
  "xgradcam": "XGrad-CAM: Grad-CAM with axiom-derived channel weights",
  "layercam": "Layer-CAM: positive gradients times activations, finer than Grad-CAM",
  "eigencam": "Eigen-CAM: the main component of the feature maps (ignores the class)",
  "eigengradcam": "Eigen-Grad-CAM: the main component of activations times gradients",
  "scorecam": "Score-CAM: each feature map as a mask, weighted by the score it keeps (slow)",
  "ablationcam": "Ablation-CAM: how much the score drops without each channel (slow)",
  "guided-gradcam": "guided backpropagation masked by Grad-CAM",
  "input-x-gradient": "the image times its gradient",
  "smoothgrad": "the gradient averaged over noisy copies: less speckle",
  "smoothgrad-sq": "the mean square of noisy copies' gradients",
  "vargrad": "the variance of noisy copies' gradients",
  "gradient-shap": "expected gradients from random baselines (SHAP values)",
  "integrated-gradients": "the gradient summed along a path from black; sums to the score change",
  "lrp": "layer-wise relevance propagation: red for the class, blue against",
  "lrp-plus": "LRP with positive contributions only",
  "lrp-alpha-beta": "LRP separating positive and negative contributions",
  "rise": "random masks weighted by the score they keep (slow)",
  "kernel-shap": "Shapley values of superpixels, by a weighted linear fit (slow)",
  "lime": "a local linear model over superpixels (slow)",
  "attention-rollout": "attention flowing from the class token to the patches (transformers)",
  "occlusion": "how much the score drops when each patch is covered",
};

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function showError(where, error) {
  where.textContent = error ? String(error.message || error) : "";
  where.hidden = !error;
}

// fn's errors are shown in the paragraph ``where`` (next to the control that caused them).
function guarded(where, fn) {
  return async (...args) => {
    try { showError(where, null); await fn(...args); } catch (error) { showError(where, error); }
  };
}

async function start() {
  const info = await api("api/model");
  const models = await api("api/models");
  $("model-picker").hidden = models.length < 2;
  for (const model of models) {
    const option = new Option(model.name, model.path);
    option.selected = location.pathname === model.path || (location.pathname === "/" && model === models[0]);
    $("models").add(option);
  }
  state.info = info;
  $("model-name").textContent = `${info.name} · ${info.task} · ${info.input_size.join("x")} · ${info.device}`;
  $("answers-title").textContent = info.answers.replace("{top}", "5");
  $("target-name").textContent = info.task === "classification" ? "Class" : "Target";
  $("attribution-class").placeholder = info.default_target;
  for (const name of info.samples) $("sample").add(new Option(name, name));
  for (const name of info.styles) $("styles").add(new Option(name, name));
  for (const name of info.attributions) $("attribution-method").add(new Option(name, name));
  $("method-list").replaceChildren(...info.attributions.flatMap((name) => {
    const term = document.createElement("dt"), text = document.createElement("dd");
    term.textContent = name;
    text.textContent = METHODS[name] || "";
    return [term, text];
  }));
  describeMethod();
  const classes = await api("api/classes");
  $("classes").replaceChildren(...classes.map((c) => new Option(`${c.label} (${c.index})`, c.label)));
  const layers = await api("api/layers");
  const select = (name) => guarded($("activation-error"), () => selectLayer(name))();
  $("layers").replaceChildren(...layerTree(layers.filter((l) => l.shape.length === 3), select));
  showLayers();
  firstReachable();
  roving($("layers"), shownLayers, () => 1,
         (item) => item.dataset.layer ? selectLayer(item.dataset.layer) : toggle(item), false);
  await openSample($("sample").value);
}

function describeMethod() {
  $("method-help").textContent = METHODS[$("attribution-method").value] || "";
}

// Roving focus over ``items()`` laid out in ``columns()``: arrow keys move, Enter or Space activates
// (``sideways``: left and right move too; a tree uses them to open and close its blocks).
function roving(container, items, columns, activate, sideways = true) {
  container.addEventListener("keydown", (event) => {
    const list = items(), width = columns();
    const at = list.indexOf(document.activeElement);
    const moves = { ArrowDown: width, ArrowUp: -width, Home: -at, End: list.length - 1 - at,
                    ...(sideways ? { ArrowRight: 1, ArrowLeft: -1 } : {}) };
    if (at < 0) return;
    if (event.key in moves) {
      event.preventDefault();
      const next = list[Math.min(list.length - 1, Math.max(0, at + moves[event.key]))];
      focusOnly(list, next);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      guarded($("activation-error"), () => activate(list[at]))();
    }
  });
}

// Tab reaches the layer list at its selected item, else at its first shown one.
function firstReachable() {
  const shown = shownLayers();
  const entry = shown.find((item) => item.classList.contains("selected")) || shown[0];
  for (const item of $("layers").querySelectorAll("li")) item.tabIndex = item === entry ? 0 : -1;
}

// In the tree: right opens a block (or steps into it), left closes it (or steps out to it).
function treeKeys(event) {
  const item = document.activeElement;
  if (!item || !$("layers").contains(item) || !["ArrowRight", "ArrowLeft"].includes(event.key)) return;
  event.preventDefault();
  const open = item.getAttribute("aria-expanded");
  const block = item.parentElement.closest("li[role=treeitem]");
  if (event.key === "ArrowRight" && open === "false") toggle(item, true);
  else if (event.key === "ArrowRight" && open === "true") focusOnly(shownLayers(), item.querySelector("ul li:not([hidden])") || item);
  else if (event.key === "ArrowLeft" && open === "true") toggle(item, false);
  else if (event.key === "ArrowLeft" && block) focusOnly(shownLayers(), block);
}

function focusOnly(list, chosen) {
  for (const item of list) item.tabIndex = item === chosen ? 0 : -1;
  chosen.focus();
}

async function openSample(name) {
  const opened = await api(`api/images/sample/${encodeURIComponent(name)}`, { method: "POST" });
  await showImage(opened);
}

async function upload(file) {
  const opened = await api("api/images", { method: "POST", body: file,
                                            headers: { "Content-Type": "application/octet-stream" } });
  let uploaded = $("sample").querySelector("option[value='']");
  if (!uploaded) $("sample").add(uploaded = new Option("your image", ""), 0);
  uploaded.textContent = `your image (${file.name})`.slice(0, 60);
  $("sample").value = "";
  await showImage(opened);
}

async function showImage(opened) {
  state.image = opened.id;
  $("image").src = `api/images/${opened.id}.png`;
  showCrop(opened.width, opened.height);
  showPredictions(await api(`api/images/${opened.id}/predictions?top=5`));
  if (state.layer) await selectLayer(state.layer, state.start);
}

// The model's view: the shorter side resized to its input, the centre cut out.
function showCrop(width, height) {
  const [inputHeight, inputWidth] = state.info.input_size;
  const scale = Math.max(inputHeight / height, inputWidth / width);
  const cropWidth = inputWidth / scale / width, cropHeight = inputHeight / scale / height;
  const crop = $("crop");
  crop.style.left = `${50 * (1 - cropWidth)}%`; crop.style.width = `${100 * cropWidth}%`;
  crop.style.top = `${50 * (1 - cropHeight)}%`; crop.style.height = `${100 * cropHeight}%`;
  crop.hidden = cropWidth > 0.999 && cropHeight > 0.999;
  Object.assign($("marks").style, { left: crop.style.left, top: crop.style.top, width: crop.style.width,
                                    height: crop.style.height });
  $("crop-note").textContent = `${width}x${height} px; ` + (crop.hidden ? "the model sees all of it" :
    `the model sees the framed centre, at ${inputWidth}x${inputHeight}`);
}

// The model's answers under the image (classes, boxes, regions), each a button that puts its
// target into the attribution form; a detector's boxes are drawn over the image too.
const BOX_COLORS = ["#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#00c7be", "#ffcc00", "#ff2d55"];

function answerText(p, k) {
  if (p.box) return `box ${k}: ${p.label} ${p.score.toFixed(2)}`;
  if (p.share !== undefined) return `${p.label}: ${(100 * p.share).toFixed(1)}% of the pixels`;
  if (p.value !== undefined) return `${p.label}: ${p.value.toPrecision(4)}`;
  return `${p.label} ${(100 * p.probability).toFixed(1)}%`;
}

function chooseAnswer(p) {
  $("attribution-class").value = p.probability !== undefined && state.info.task === "classification" ? p.label : p.target;
  for (const chosen of document.querySelectorAll("#predictions button, #marks .mark")) {
    chosen.classList.toggle("chosen", chosen.dataset.target === p.target);
  }
  selectTab($("tab-attribution"));
}

function showPredictions(predictions) {
  const total = predictions.reduce((sum, p) => sum + (p.probability || 0), 0);
  $("answers-hint").textContent = !predictions.length ? (state.info.task === "detection" ? "No box above score 0.3." : "") :
    state.info.task === "classification" ? `Together ${(100 * total).toFixed(1)}%: the model knows only its ` +
      `${state.info.classes} classes, and answers with one of them. Click one to explain it.` : "Click one to explain it.";
  $("predictions").replaceChildren(...predictions.map((p, k) => {
    const item = document.createElement("li"), button = document.createElement("button");
    button.type = "button";
    button.textContent = answerText(p, k);
    button.dataset.target = p.target;
    button.title = `explain ${p.target}`;
    if (p.box) button.style.borderLeft = `4px solid ${BOX_COLORS[k % BOX_COLORS.length]}`;
    button.addEventListener("click", () => chooseAnswer(p));
    item.append(button);
    return item;
  }));
  const [height, width] = state.info.input_size;
  $("marks").replaceChildren(...predictions.filter((p) => p.box).map((p, k) => {
    const mark = document.createElement("button"), [x1, y1, x2, y2] = p.box;
    mark.type = "button";
    mark.className = "mark";
    mark.tabIndex = -1;  // the list above is the keyboard's way to the same boxes
    mark.dataset.target = p.target;
    mark.setAttribute("aria-label", answerText(p, k));
    mark.style.setProperty("--color", BOX_COLORS[k % BOX_COLORS.length]);
    Object.assign(mark.style, { left: `${100 * x1 / width}%`, top: `${100 * y1 / height}%`,
                                width: `${100 * (x2 - x1) / width}%`, height: `${100 * (y2 - y1) / height}%` });
    mark.innerHTML = "<span></span>";
    mark.querySelector("span").textContent = `${k} ${p.label}`;
    mark.addEventListener("click", () => chooseAnswer(p));
    return mark;
  }));
}

async function selectLayer(name, start = 0) {
  state.layer = name;
  state.start = start;
  for (const item of $("layers").querySelectorAll("li[data-layer]")) {
    item.classList.toggle("selected", item.dataset.layer === name);
    item.setAttribute("aria-selected", item.dataset.layer === name);
    const block = item.parentElement.closest("li[role=treeitem]");
    if (item.dataset.layer === name && block) toggle(block, true);  // the selected layer is shown
  }
  $("layer-name").textContent = name;
  followSelection(name, state.channel);
  const query = `layer=${encodeURIComponent(name)}&start=${start}`;
  const layout = await api(`api/images/${state.image}/activations?${query}`);
  await loaded($("activations"), `api/images/${state.image}/activations.png?${query}&t=${Date.now()}`);
  showGrid(layout);
  if (state.channel !== null && state.channel < layout.total_channels) await selectChannel(state.channel, false);
}

function loaded(image, source) {
  return new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = () => reject(new Error("the picture could not be loaded"));
    image.src = source;
  });
}

function showGrid(layout) {
  state.layout = layout;
  const last = layout.start + layout.channels.length;
  $("grid-caption").textContent = `Channels ${layout.start + 1}–${last} of ${layout.total_channels}, strongest ` +
    `first; gray scale shared by the whole layer. Click a channel or move with the arrow keys.`;
  $("grid-tools").hidden = false;
  $("previous-page").disabled = layout.start === 0;
  $("next-page").disabled = last >= layout.total_channels;
  $("grid-low").textContent = layout.low.toPrecision(3);
  $("grid-high").textContent = layout.high.toPrecision(3);
  const image = $("activations");
  const step = (image.naturalWidth - layout.padding) / layout.columns;
  const rowStep = (image.naturalHeight - layout.padding) / layout.rows;
  $("tiles").dataset.layer = layout.layer;
  $("tiles").replaceChildren(...layout.channels.map((channel, i) => {
    const tile = document.createElement("button");
    const column = i % layout.columns, row = Math.floor(i / layout.columns);
    tile.type = "button";
    tile.className = "tile";
    tile.tabIndex = i === 0 ? 0 : -1;
    tile.dataset.channel = channel;
    tile.textContent = channel;
    tile.setAttribute("aria-label", `channel ${channel}, rank ${layout.start + i + 1}, mean ${layout.strength[i].toPrecision(3)}`);
    tile.style.left = `${100 * (layout.padding + column * step) / image.naturalWidth}%`;
    tile.style.top = `${100 * (layout.padding + row * rowStep) / image.naturalHeight}%`;
    tile.style.width = `${100 * (step - layout.padding) / image.naturalWidth}%`;
    tile.style.height = `${100 * (rowStep - layout.padding) / image.naturalHeight}%`;
    tile.addEventListener("click", guarded($("activation-error"), () => selectChannel(channel)));
    return tile;
  }));
}

async function selectChannel(channel, fresh = true) {
  state.channel = channel;
  for (const tile of $("tiles").children) tile.classList.toggle("selected", Number(tile.dataset.channel) === channel);
  $("channel-view").hidden = false;
  $("channel-name").textContent = `${channel} of ${state.layer}`;
  if (fresh) {
    $("channel-visual").removeAttribute("src");
    $("visual-caption").textContent = "optimized image (not computed yet)";
  }
  const query = `layer=${encodeURIComponent(state.layer)}&channel=${channel}`;
  const numbers = await api(`api/images/${state.image}/channel?${query}`);
  $("channel-caption").textContent = `over the image; mean activation ${numbers.mean.toPrecision(3)} (the layer's own units)`;
  $("map-low").textContent = numbers.min.toPrecision(3);
  $("map-high").textContent = numbers.max.toPrecision(3);
  $("channel-map").src = `api/images/${state.image}/channel.png?${query}`;
  const top = state.info.top_activations;
  const shown = top && top.layer === state.layer && top.channels.includes(channel);
  $("top-figure").hidden = !shown;
  if (shown) $("channel-top").src = `api/top/${channel}.png`;
  const inMicroscope = state.info.microscope.includes(state.layer);
  $("unit-page").hidden = !inMicroscope;
  if (inMicroscope) {
    $("unit-page").href = `microscope/layers/${encodeURIComponent(state.layer)}/${String(channel).padStart(4, "0")}.html`;
  }
  followSelection(state.layer, channel);
}

// The tools' layer fields take the selected layer, and DeepDream's channel the selected channel.
function followSelection(layer, channel) {
  for (const input of document.querySelectorAll(".layer-input")) input.value = layer;
  const dreamChannel = document.querySelector("form[data-tab='dream'] input[name='channel']");
  const layout = state.layout;
  dreamChannel.value = channel !== null && layout && layout.layer === layer && channel < layout.total_channels ?
    channel : "";
}

// The first invalid field of a form, said in words next to the form (not in the browser's tooltip).
function invalidField(form) {
  const field = [...form.elements].find((element) => element.willValidate && !element.checkValidity());
  if (!field) return null;
  const label = field.closest("label")?.textContent.trim().split("\n")[0] || field.name;
  return new Error(`${label}: ${field.validationMessage}`);
}

// ---- jobs: one result area per tab, and a history of finished results ----

function resultArea(panel) {
  let area = panel.querySelector(".result");
  if (!area) {
    area = $("result-template").content.firstElementChild.cloneNode(true);
    panel.append(area);
    area.querySelector(".cancel").addEventListener("click", guarded(area.querySelector(".error"), () =>
      api(`api/jobs/${area.dataset.job}`, { method: "DELETE" })));
  }
  return area;
}

async function runJob(kind, body, onStatus) {
  const job = await api(`api/jobs/${kind}`, { method: "POST", body: JSON.stringify(body),
                                               headers: { "Content-Type": "application/json" } });
  onStatus(job);
  const events = new EventSource(`api/jobs/${job.id}/events`);
  events.onmessage = (message) => {
    const status = JSON.parse(message.data);
    onStatus(status);
    if (FINISHED.includes(status.state)) events.close();
  };
  return events;
}

// A request the server refused (400, 422, 429): its reason, and no job to follow or cancel.
function showRefusal(area, error) {
  area.hidden = false;
  delete area.dataset.job;
  for (const part of area.querySelectorAll(".status, .caption, .row, .downloads")) part.hidden = true;
  showError(area.querySelector(".error"), error);
}

function showJob(area, status) {
  area.hidden = false;
  for (const part of area.querySelectorAll(".status, .caption, .row")) part.hidden = false;
  area.dataset.job = status.id;
  const bar = area.querySelector("progress");
  if (status.state === "running" && status.progress === 0) bar.removeAttribute("value"); // indeterminate
  else bar.value = status.progress;
  const state = area.querySelector(".state");
  state.textContent = status.state === "running" ? `running ${Math.round(100 * status.progress)}%` : status.state;
  state.dataset.state = status.state;
  area.querySelector(".frames").textContent = status.state === "running" && status.frames > 1 ?
    `${status.frames} pictures so far` : "";
  area.querySelector(".frames").dataset.frames = status.frames;
  area.querySelector(".cancel").hidden = FINISHED.includes(status.state);
  showError(area.querySelector(".error"), status.state === "failed" ? status.message : null);
  area.querySelector(".caption").textContent = status.state === "done" ? status.caption :
    status.state === "cancelled" ? status.message : "";
  const frame = `api/jobs/${status.id}/frame.png?number=-1&f=${status.frames}`;
  if (status.frames > 0) area.querySelector(".frame").src = frame;
  area.querySelector(".frame").alt = status.caption || `${status.kind} in progress`;
  const downloads = area.querySelector(".downloads");
  downloads.hidden = status.state !== "done";
  if (status.state === "done") {
    area.querySelector(".png").href = frame;
    area.querySelector(".png").download = `${status.name}.png`;
    area.querySelector(".npy").download = `${status.name}.npy`;
    area.querySelector(".npy").href = `api/jobs/${status.id}/result.npy`;
    area.querySelector(".npy").hidden = !status.array;
    remember(status, frame);
  }
}

function remember(status, frame) {
  if ($("history").querySelector(`[data-job="${status.id}"]`)) return;
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.job = status.id;
  button.innerHTML = `<img alt=""><span></span>`;
  button.querySelector("img").src = frame;
  button.querySelector("span").textContent = shortened(`${status.kind}: ${status.caption}`, 90);
  button.title = status.caption;
  button.addEventListener("click", () => {
    const panel = document.querySelector(".panel:not([hidden])");
    const compare = resultArea(panel).querySelector(".compare");
    resultArea(panel).hidden = false;
    compare.hidden = false;
    compare.querySelector("img").src = frame;
    compare.querySelector("figcaption").textContent = `${status.kind}: ${status.caption}`;
  });
  item.append(button);
  $("history").prepend(item);
  $("history-title").hidden = false;
  const ids = [...$("history").querySelectorAll("button")].map((b) => b.dataset.job).slice(0, 32);
  $("download-all").href = `api/jobs/archive.zip?ids=${ids.join(",")}`;
}

// ``text`` cut at a word to at most ``length`` characters, with an ellipsis when cut.
function shortened(text, length) {
  if (text.length <= length) return text;
  const cut = text.slice(0, length - 1);
  return cut.slice(0, Math.max(cut.lastIndexOf(" "), length / 2)) + "…";
}

function showVisualization(status) {
  if (status.frames > 0) $("channel-visual").src = `api/jobs/${status.id}/frame.png?number=-1&f=${status.frames}`;
  const percent = Math.round(100 * status.progress);
  $("visual-caption").textContent = status.state === "done" ? "optimized image" :
    status.state === "failed" ? status.message : `optimizing… ${percent}%`;
}

function formBody(form) {
  const body = { image: state.image };
  for (const [key, value] of new FormData(form)) {
    const element = form.elements[key];
    if (value === "" && element.classList.contains("layer-input") && state.layer) body[key] = state.layer;
    if (value === "") continue;
    const scale = Number(element.dataset.scale || 1);
    body[key] = element.type === "number" ? Number(value) / scale : element.type === "checkbox" ? true : value;
  }
  return body;
}

// ---- tabs ----

function selectTab(tab) {
  const tabs = [...document.querySelectorAll("#tabs [role=tab]")];
  for (const other of tabs) {
    other.setAttribute("aria-selected", other === tab);
    other.tabIndex = other === tab ? 0 : -1;
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.dataset.tab !== tab.dataset.tab;
}

function bindTabs() {
  const tabs = [...document.querySelectorAll("#tabs [role=tab]")];
  for (const tab of tabs) tab.addEventListener("click", () => selectTab(tab));
  $("tabs").addEventListener("keydown", (event) => {
    const at = tabs.indexOf(document.activeElement);
    const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -at, End: tabs.length - 1 - at };
    if (at < 0 || !(event.key in moves)) return;
    event.preventDefault();
    const next = tabs[(at + moves[event.key] + tabs.length) % tabs.length];
    selectTab(next);
    next.focus();
  });
}

// ---- live camera: frames go to /api/live as fast as the answers come back ----

async function toggleLive() {
  if (state.live) return stopLive();
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  const video = $("camera");
  video.srcObject = stream;
  await video.play();
  state.live = { stream, frames: 0, since: performance.now() };
  $("live").setAttribute("aria-pressed", "true");
  $("live").textContent = "Stop camera";
  video.hidden = false;
  $("image").hidden = true;
  $("crop").hidden = true;
  $("crop-note").textContent = "live: the camera's centre square, at the model's input size";
  $("live-rate").hidden = false;
  liveLoop(state.live).catch((error) => { stopLive(); showError($("image-error"), error); });
}

function stopLive() {
  if (!state.live) return;
  for (const track of state.live.stream.getTracks()) track.stop();
  state.live = null;
  $("live").setAttribute("aria-pressed", "false");
  $("live").textContent = "Live camera";
  $("camera").hidden = true;
  $("image").hidden = false;
  $("live-rate").hidden = true;
  if (state.image) showImage({ id: state.image, width: $("image").naturalWidth, height: $("image").naturalHeight });
}

async function liveLoop(live) {
  const [height, width] = state.info.input_size;
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const video = $("camera");
  while (state.live === live) {
    const side = Math.min(video.videoWidth, video.videoHeight);
    canvas.getContext("2d").drawImage(video, (video.videoWidth - side) / 2, (video.videoHeight - side) / 2, side, side,
                                      0, 0, width, height);
    const frame = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    let query = "";
    if (state.layer) query = `?layer=${encodeURIComponent(state.layer)}&start=${state.start}` +
      (state.channel !== null ? `&channel=${state.channel}` : "");
    const answer = await api(`api/live${query}`, { method: "POST", body: frame,
                                                    headers: { "Content-Type": "application/octet-stream" } });
    if (state.live !== live) return;
    showPredictions(answer.predictions);
    if (answer.grid) {
      await loaded($("activations"), answer.grid);
      showGrid(answer.layout);
    }
    if (answer.channel) $("channel-map").src = answer.channel;
    live.frames += 1;
    const seconds = (performance.now() - live.since) / 1000;
    $("live-rate").textContent = `live: ${(live.frames / seconds).toFixed(1)} frames per second`;
    $("live-rate").dataset.frames = live.frames;
  }
}

function bind() {
  const imageError = $("image-error");
  $("sample").addEventListener("change", guarded(imageError, () => $("sample").value && openSample($("sample").value)));
  $("upload").addEventListener("change", guarded(imageError, () => upload($("upload").files[0])));
  $("live").addEventListener("click", guarded(imageError, toggleLive));
  $("models").addEventListener("change", () => { location.href = $("models").value; });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guarded(imageError, async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    await upload(event.dataTransfer.files[0]);
  }));
  for (const control of [$("layer-filter"), $("show-pass")]) {
    control.addEventListener("input", () => { showLayers(); firstReachable(); });
  }
  $("layer-filter").addEventListener("keydown", (event) => {  // ArrowDown: into the list; Enter: its first match
    const text = $("layer-filter").value.toLowerCase();
    const shown = shownLayers();
    const first = shown.find((item) => item.dataset.layer?.toLowerCase().includes(text)) || shown[0];
    if (!first || !["ArrowDown", "Enter"].includes(event.key)) return;
    event.preventDefault();
    focusOnly(shown, first);
    if (event.key === "Enter" && first.dataset.layer) guarded($("activation-error"), () => selectLayer(first.dataset.layer))();
  });
  $("layers").addEventListener("keydown", treeKeys);
  roving($("tiles"), () => [...$("tiles").children], () => state.layout.columns,
         (tile) => selectChannel(Number(tile.dataset.channel)));
  const activationError = $("activation-error");
  $("previous-page").addEventListener("click", guarded(activationError, () =>
    selectLayer(state.layer, Math.max(0, state.start - state.layout.page))));
  $("next-page").addEventListener("click", guarded(activationError, () =>
    selectLayer(state.layer, state.start + state.layout.page)));
  $("visualize").addEventListener("click", guarded(activationError, () => {
    const { layer, channel } = state;  // shown only while that channel is still the one selected
    return runJob("visualize", { layer, channel }, (status) => {
      if (state.layer === layer && state.channel === channel) showVisualization(status);
    });
  }));
  $("attribution-method").addEventListener("change", describeMethod);
  bindTabs();
  for (const form of document.querySelectorAll(".panel form")) {
    const panel = form.closest(".panel");
    const area = resultArea(panel);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (area.events) area.events.close();
      try {
        const invalid = invalidField(form);
        if (invalid) throw invalid;
        area.events = await runJob(form.dataset.tab, formBody(form), (status) => showJob(area, status));
      } catch (error) {
        showRefusal(area, error);
      }
    });
  }
}

bind();
start().catch((error) => showError($("image-error"), error));
