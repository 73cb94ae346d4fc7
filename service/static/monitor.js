// The monitor page: polls the aggregate feed (/v1/monitor) and redraws, pausing while hidden.
import { getJson, setApiKey } from "./api.js";
import { pairedHistogram, reliabilityDiagram, stackedTimeline } from "./charts.js";

const $ = (id) => document.getElementById(id);
// Refresh period in seconds from `?every=N` (1 to 3600), 5 by default or for anything else: a
// period past the browser's timer limit (~24.8 days) overflowed and polled 75 times a second.
const asked = Number(new URLSearchParams(location.search).get("every"));
const EVERY_MS = (asked >= 1 && asked <= 3600 ? asked : 5) * 1000;
let paused = false;
let timer = null;
let submitted = false; // the next answer is the verdict on a key just entered
let updated = null; // when the figures on screen were fetched

// null: no decided input yet; undefined: a replica of an older version, whose feed lacks that rate.
const rate = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

// "a request", "3 requests"
const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
// A message that ends in its own punctuation ("…its own?") gets no second full stop.
const sentence = (text) => (/[.?!]$/.test(text) ? text : `${text}.`);

function render(s) {
  $("window").textContent = String(s.window.minutes);
  // At the feed's row limit the figures are of its newest rows only, not of the whole window.
  $("capped").hidden = s.requests < s.window.row_limit;
  $("capped").textContent = `Figures of the newest ${count(s.window.row_limit, "request")} only (the feed's row limit, VIGIL_MONITOR_MAX_ROWS): the window holds more.`;
  $("model").textContent = `(${s.model.name} v${s.model.version})`;
  $("t-requests").textContent = String(s.requests);
  $("t-requests-noun").textContent = s.requests === 1 ? "request" : "requests";
  $("t-accept").textContent = rate(s.rates.accept);
  $("t-abstain").textContent = rate(s.rates.abstain);
  $("t-ood").textContent = rate(s.rates.ood);
  $("t-errors").textContent = String(s.errors);
  $("t-feedback").textContent = String(s.reliability.count);
  stackedTimeline($("chart-timeline"), s.timeline, ["accept", "abstain", "reject_ood", "error"]);
  pairedHistogram($("chart-confidence"), s.confidence.edges, s.confidence.live, s.confidence.reference, "confidence", "Confidence");
  reliabilityDiagram($("chart-reliability"), s.reliability);
}

async function tick() {
  clearTimeout(timer);
  if (document.hidden) return; // resumed by the visibilitychange listener
  const status = $("status");
  try {
    render(await getJson("/v1/monitor"));
    // Read aloud only a change of state (a failure, a recovery), not every new timestamp.
    status.setAttribute("aria-live", status.classList.contains("bad") ? "polite" : "off");
    status.classList.remove("bad");
    updated = new Date().toLocaleTimeString();
    status.textContent = `Updated ${updated}; ` + (paused ? "paused." : `refreshes every ${EVERY_MS / 1000} s.`);
    $("key-form").hidden = true;
    document.body.classList.remove("stale");
  } catch (err) {
    status.setAttribute("aria-live", status.classList.contains("bad") ? "off" : "polite");
    status.classList.add("bad");
    if (err.status === 401 || err.status === 403) {
      // VIGIL_METRICS_ADMIN_ONLY: retrying cannot help; an admin key can, unless the server has
      // none (403 admin_disabled). A client key's 403 (forbidden) hid the form for good, with
      // that key kept for the tab: it is dropped, and the form stays for the right one.
      const form = $("key-form");
      const hopeless = err.code === "admin_disabled";
      const appeared = form.hidden && !hopeless;
      if (err.code === "forbidden") setApiKey("");
      status.setAttribute("aria-live", "polite"); // a refused key is news, every time
      status.textContent = submitted || err.code === "forbidden" ? `That key was refused: ${sentence(err.message)}` : `This monitor is for admins: ${sentence(err.message)}`;
      form.hidden = hopeless;
      if (appeared || submitted) $("api-key").select();
      submitted = false;
      return;
    }
    // The figures on screen are as old as the last update: greyed, and the status says since when.
    document.body.classList.add("stale");
    status.textContent = `Could not update${updated ? ` since ${updated}` : ""}: ${sentence(err.message)} The figures shown are from then. Retrying.`;
  }
  if (!paused) timer = setTimeout(tick, EVERY_MS);
}

$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").setAttribute("aria-pressed", String(paused));
  $("pause").textContent = paused ? "Resume updates" : "Pause updates";
  if (!paused) return tick();
  clearTimeout(timer);
  $("status").textContent = $("status").textContent.replace(/refreshes every .*$/, "paused.");
});
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("api-key").value.trim());
  submitted = true;
  tick();
});
document.addEventListener("visibilitychange", () => { if (!document.hidden && !paused) tick(); });
tick();
