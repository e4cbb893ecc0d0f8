// convscope explorer: the layer list as a tree of blocks (ARIA tree). A block ("_blocks.3",
// "layer2.1") holds the layers inside it, collapsed at first; pass-through layers (padding,
// identity, dropout) are hidden unless asked for; the filter shows every match and its block.
"use strict";

const PASS_THROUGH = ["ZeroPad2d", "ConstantPad2d", "Identity", "Dropout", "Dropout2d", "Flatten"];

// The block a layer belongs to: its name up to the first numeric part ("_blocks.3._bn1" -> "_blocks.3").
function blockOf(name) {
  const parts = name.replace(/@\d+$/, "").split(".");
  const at = parts.findIndex((part) => /^\d+$/.test(part));
  return at < 0 ? name : parts.slice(0, at + 1).join(".");
}

function layerRow(item, layer, label) {
  const field = layer && layer.receptive_field ? ` · rf ${layer.receptive_field.size} px` : "";
  const row = document.createElement("div");
  row.className = "row-of-layer";
  row.innerHTML = `<span class="twisty" aria-hidden="true"></span><span class="name"></span> <span class="meta"></span>`;
  row.querySelector(".name").textContent = label;
  row.querySelector(".meta").textContent = layer ? `${layer.shape.join("x")}${field}` : "";
  item.append(row);
  if (layer) {
    item.dataset.layer = layer.name;
    item.setAttribute("aria-selected", "false");
    item.title = `${layer.kind}, ${layer.parameters} parameters` + (layer.receptive_field ?
      `; each unit sees ${layer.receptive_field.size}x${layer.receptive_field.size} input pixels` : "") +
      (/@\d+$/.test(layer.name) ? `; @${layer.name.split("@")[1]}: call ${Number(layer.name.split("@")[1]) + 1} of a module used more than once` : "");
    if (PASS_THROUGH.includes(layer.kind)) item.classList.add("pass");
  }
  return row;
}

// The tree's items: one per block (the block's own layer, if it has maps) with its layers inside.
function layerTree(layers, select) {
  const blocks = new Map();
  for (const layer of layers) {
    const block = blockOf(layer.name);
    if (!blocks.has(block)) blocks.set(block, { own: null, inside: [] });
    if (block === layer.name) blocks.get(block).own = layer; else blocks.get(block).inside.push(layer);
  }
  return [...blocks].map(([block, { own, inside }]) => {
    const item = document.createElement("li");
    item.setAttribute("role", "treeitem");
    item.tabIndex = -1;
    item.dataset.block = block;
    const row = layerRow(item, own, block);
    row.addEventListener("click", (event) => {
      if (inside.length && (event.target.classList.contains("twisty") || !own)) toggle(item);
      else if (own) select(own.name);
    });
    if (inside.length) {
      item.setAttribute("aria-expanded", "false");
      const group = document.createElement("ul");
      group.setAttribute("role", "group");
      group.replaceChildren(...inside.map((layer) => {
        const child = document.createElement("li");
        child.setAttribute("role", "treeitem");
        child.tabIndex = -1;
        layerRow(child, layer, layer.name.slice(block.length) || layer.name).addEventListener("click", () => select(layer.name));
        return child;
      }));
      row.querySelector(".meta").textContent += `${own ? " · " : ""}${inside.length} inside`;
      item.append(group);
    }
    return item;
  });
}

function toggle(item, open = item.getAttribute("aria-expanded") !== "true") {
  if (!item.hasAttribute("aria-expanded")) return;
  item.setAttribute("aria-expanded", String(open));
  showLayers();
}

// Applies the filter, the pass-through switch and the blocks' expansion to every item.
function showLayers() {
  const text = document.getElementById("layer-filter").value.toLowerCase();
  const passing = document.getElementById("show-pass").checked;
  for (const block of document.querySelectorAll("#layers > li")) {
    const open = block.getAttribute("aria-expanded") === "true" || text !== "";
    let anyInside = false;
    for (const child of block.querySelectorAll("ul li")) {
      const matches = child.dataset.layer.toLowerCase().includes(text) && (passing || !child.classList.contains("pass"));
      child.hidden = !(open && matches);
      anyInside ||= matches;
    }
    const own = Boolean(block.dataset.layer) && block.dataset.layer.toLowerCase().includes(text) &&
      (passing || !block.classList.contains("pass"));
    block.hidden = !(own || anyInside);
  }
}

// The items a person can see now, top to bottom.
function shownLayers() {
  return [...document.querySelectorAll("#layers li[role=treeitem]")].filter((item) => item.offsetParent !== null);
}
