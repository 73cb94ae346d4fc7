// The demo page: three ways in (draw, upload, gallery), one result panel, and feedback.
import { apiKey, getBlob, getJson, predict, sendFeedback, setApiKey } from "./api.js";
import { drawingPad } from "./draw.js";
import { showError, showHint, showIdle, showPending, showPrediction } from "./result.js";

const $ = (id) => document.getElementById(id);
let card = null;
let current = null;
// Each classify() call takes a number; only the newest call may show its answer, so a slow
// answer to an earlier image never lands next to a later one (and feedback never goes astray).
let latest = 0;

// Bring the decision into view when it is not (on a phone the result is below the inputs;
// on a laptop the examples are below the fold, and the badge scrolled away above them).
// Not after drawing: the pad stays put, and the verdict under it shows the decision.
function reveal() {
  const top = $("badge").getBoundingClientRect().top;
  if (top >= 0 && top < window.innerHeight - 80) return;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  $("result").scrollIntoView({ behavior: still ? "auto" : "smooth" });
}

// Milliseconds the pen may rest before a drawing is sent: a 7 or a 4 drawn in two strokes
// was classified (and logged) after its first, often as out of distribution.
const PEN_REST_MS = 700;

// `load` gives the image; the call takes its number before loading it, so that a gallery
// example slow to download cannot land after an example clicked later. `fromPad`: the copy of
// the verdict under the drawing pad shows only for a drawing, never under an empty pad.
async function classify(load, filename, fromPad = false) {
  const mine = ++latest;
  current = null;
  showPending();
  $("pad-verdict").parentElement.hidden = !fromPad;
  const preview = $("preview");
  preview.hidden = true; // the previous input's picture must not stand beside this one's state
  try {
    const blob = await load();
    if (mine !== latest) return;
    if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.alt = "The image that was sent";
    preview.hidden = false;
    preview.onerror = () => { preview.hidden = true; }; // a file the browser cannot show either
    const answer = await predict(blob, filename);
    if (mine !== latest) return;
    if (!card) await loadCard(); // it failed at page load: without it the answer lacks its explanations
    if (mine !== latest) return;
    current = answer;
    showPrediction(current, card);
  } catch (err) {
    if (mine === latest) showError(err);
  }
}

function setUpDrawing() {
  let resting = null, drawing = 0; // `drawing` counts Clears: a send awaiting its PNG must not outlive one
  const send = async () => {
    resting = null;
    const mine = drawing;
    const blob = await pad.toBlob();
    if (mine === drawing) classify(async () => blob, "drawing.png", true);
  };
  const wait = () => { clearTimeout(resting); resting = null; };
  const pad = drawingPad($("pad"), () => { wait(); resting = setTimeout(send, PEN_REST_MS); }, wait);
  $("classify-drawing").addEventListener("click", async () => {
    wait();
    if (pad.isEmpty()) return showHint("Draw a digit on the black pad first, then lift the pen.");
    send();
  });
  $("clear-drawing").addEventListener("click", () => {
    wait();
    drawing++;
    latest++; // an answer still on its way belongs to the wiped drawing
    pad.clear();
    current = null;
    showIdle();
    $("pad-verdict").parentElement.hidden = false;
  });
}

function setUpUpload() {
  const file = $("file"), drop = $("drop");
  file.addEventListener("change", () => {
    const f = file.files[0];
    file.value = ""; // so that choosing the same file again fires "change" again
    if (f) classify(async () => f, f.name).then(reveal);
  });
  // A file dropped anywhere on the page is classified: outside the zone, the browser opened
  // it in place of the demo.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) classify(async () => f, f.name).then(reveal);
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", () => drop.classList.remove("over")); // the window's handler classifies it
}

const GROUPS = { clear: "Clear digits", ambiguous: "Ambiguous digits", not_a_digit: "Not digits" };

async function setUpGallery() {
  const host = $("gallery");
  try {
    const g = await getJson("/static/gallery/gallery.json");
    host.replaceChildren();
    for (const [group, title] of Object.entries(GROUPS)) {
      const items = g.items.filter((i) => i.group === group);
      host.appendChild(Object.assign(document.createElement("p"), { className: "group-title", textContent: title }));
      const ul = Object.assign(document.createElement("ul"), { className: "gallery" });
      for (const item of items) {
        const btn = Object.assign(document.createElement("button"), { type: "button", title: item.source });
        btn.dataset.file = item.file;
        const img = Object.assign(document.createElement("img"), { src: `/static/gallery/${item.file}`, alt: "" });
        btn.append(img, item.caption);
        btn.addEventListener("click", () => classify(() => getBlob(`/static/gallery/${item.file}`), item.file).then(reveal));
        const li = document.createElement("li");
        li.appendChild(btn);
        ul.appendChild(li);
      }
      host.appendChild(ul);
    }
  } catch (err) {
    host.textContent = `Examples could not be loaded: ${err.message}`;
  }
}

function setUpFeedback() {
  $("feedback").addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("fb-status");
    if (!current) return;
    status.classList.remove("bad");
    try {
      const saved = await sendFeedback(current.request_id, Number($("truth").value), $("note").value.trim());
      const label = $("truth").selectedOptions[0].textContent;
      status.textContent = `Thank you: label ${label} recorded for request ${current.request_id}` + (saved && saved.replaced ? ", in place of the label sent before." : ".");
    } catch (err) {
      status.classList.add("bad");
      status.textContent = `Not recorded: ${err.message}`;
    }
  });
}

// Asked again with the next answer when it fails at page load.
async function loadCard() {
  try {
    [card] = await getJson("/v1/models");
  } catch {
    card = null; // the page still works; class names fall back to indices
  }
  const chosen = $("truth").value;
  const names = card ? card.class_names : [...Array(10).keys()].map(String);
  // No label until one is chosen (the select is `required`): a default recorded 0 in one click.
  const choose = Object.assign(document.createElement("option"), { value: "", textContent: "choose…", selected: true });
  $("truth").replaceChildren(choose, ...names.map((n, i) => Object.assign(document.createElement("option"), { value: String(i), textContent: n })));
  $("truth").value = chosen;
}

const key = $("api-key");
key.value = apiKey();
key.addEventListener("change", () => setApiKey(key.value.trim()));
$("key-form").addEventListener("submit", (e) => { e.preventDefault(); setApiKey(key.value.trim()); });
setUpDrawing();
setUpUpload();
setUpFeedback();
loadCard();
setUpGallery();
