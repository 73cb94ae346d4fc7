// The monitor page: polls the aggregate feed (/v1/monitor) and redraws, pausing while hidden.
import { getJson, setApiKey } from "./api.js";
import { pairedHistogram, reliabilityDiagram, stackedTimeline } from "./charts.js";

const $ = (id) => document.getElementById(id);
// Refresh period in seconds from `?every=N` (at least 1), 5 by default.
const EVERY_MS = Math.max(1, Number(new URLSearchParams(location.search).get("every")) || 5) * 1000;
let paused = false;
let timer = null;
let submitted = false; // the next answer is the verdict on a key just entered

// null: no decided input yet; undefined: a replica of an older version, whose feed lacks that rate.
const rate = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

function render(s) {
  $("window").textContent = String(s.window.minutes);
  $("model").textContent = `(${s.model.name} v${s.model.version})`;
  $("t-requests").textContent = String(s.requests);
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
    status.textContent = `Updated ${new Date().toLocaleTimeString()}; ` + (paused ? "paused." : `refreshes every ${EVERY_MS / 1000} s.`);
    $("key-form").hidden = true;
  } catch (err) {
    status.setAttribute("aria-live", status.classList.contains("bad") ? "off" : "polite");
    status.classList.add("bad");
    if (err.status === 401 || err.status === 403) {
      // VIGIL_METRICS_ADMIN_ONLY: retrying cannot help; a key (401) can, unless none exists (403).
      const form = $("key-form");
      const appeared = form.hidden && err.status === 401;
      status.setAttribute("aria-live", "polite"); // a refused key is news, every time
      status.textContent = submitted ? `That key was refused: ${err.message}.` : `This monitor is for admins: ${err.message}.`;
      form.hidden = err.status === 403;
      if (appeared || submitted) $("api-key").select();
      submitted = false;
      return;
    }
    status.textContent = `Could not update: ${err.message}. Retrying.`;
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
