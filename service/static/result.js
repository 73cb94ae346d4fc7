// Renders one /v1/predict answer (or an error) into the result panel.
import { fmt, probabilityBars, sampleRanges, scoreGauge } from "./charts.js";

const TITLES = { accept: "Accept", abstain: "Abstain", reject_ood: "Reject: out of distribution" };
const $ = (id) => document.getElementById(id);

// The badge, and its copy under the drawing pad (on a phone the result is far below it).
function setBadge(decision, text) {
  for (const badge of [$("badge"), $("pad-verdict")]) {
    badge.dataset.decision = decision;
    badge.textContent = text;
  }
}

function clearAnswer(decision, badgeText, meaning) {
  // Nothing of the previous answer may stay beside the new state.
  setBadge(decision, badgeText);
  $("pred-label").textContent = "–";
  $("pred-label").classList.remove("void");
  $("confidence").textContent = "";
  $("meaning").textContent = meaning;
  $("details").hidden = true;
}

const sentence = (text) => text.charAt(0).toUpperCase() + text.slice(1);

export function showError(err) {
  const where = (err.code ? ` (${err.code})` : "") + (err.requestId ? ` — request ${err.requestId}` : "");
  clearAnswer("error", "Error", `${sentence(err.message)}${where}`);
}

export function showHint(text) {
  clearAnswer("none", "Nothing to classify", text);
}

export function showIdle() {
  clearAnswer("none", "No input yet", "Draw, upload or pick an image to see the decision and why.");
  $("preview").hidden = true;
}

export function showPending() {
  clearAnswer("none", "Thinking…", "Waiting for the server's answer…");
}

// A calibrated 0.99996 is not certainty: never shown as 100.0 %.
function percent(p) {
  return p >= 0.9995 ? "over 99.9%" : `${(100 * p).toFixed(1)}%`;
}

function confidenceText(r) {
  if (r.decision === "reject_ood") {
    // Calibration holds for digits like the training data; for this input the number means nothing.
    return "— no confidence can be given: the input is unlike the training data";
  }
  return `${percent(r.confidence)} calibrated confidence`;
}

// Split conformal coverage is marginal, over inputs like the calibration digits: it promises
// nothing for one out-of-distribution input, so the caption says so instead.
function setHint(alpha, decision) {
  if (alpha === null) return "";
  if (decision === "reject_ood") return "No guarantee for this input: the sets' coverage holds only for digits like the training data, and this input is not one.";
  return `Over digits like the training data, sets built this way contain the true class at least ${(100 * (1 - alpha)).toFixed(0)}% of the time.`;
}

export function showPrediction(r, card) {
  const names = card ? card.class_names : r.probabilities.map((_, i) => String(i));
  setBadge(r.decision, TITLES[r.decision]);
  // As the struck-through label above says: a rejected input's class is not an answer.
  $("pad-verdict").textContent = r.decision === "reject_ood" ? TITLES[r.decision] : `${TITLES[r.decision]} — ${r.prediction.class_name}`;
  $("pred-label").textContent = r.prediction.class_name;
  $("pred-label").dataset.label = String(r.prediction.label);
  $("pred-label").classList.toggle("void", r.decision === "reject_ood");
  $("confidence").textContent = confidenceText(r);
  $("meaning").textContent = (card && card.decisions[r.decision]) || "";
  $("details").hidden = false;
  // Drawn, but greyed: a green "OK" on a trouser's failure gauge read as a verdict on it.
  $("details").classList.toggle("void", r.decision === "reject_ood");
  $("void-note").hidden = r.decision !== "reject_ood";

  probabilityBars($("chart-probs"), r.probabilities, names, r.prediction.label);
  $("failure-method").textContent = `(${r.failure.method}; higher means more likely wrong)`;
  scoreGauge($("chart-failure"), "failure", r.failure.score, r.failure.threshold, r.failure.flagged);
  $("ood-method").textContent = `(${r.ood.method}; higher means more unusual)`;
  scoreGauge($("chart-ood"), "ood", r.ood.score, r.ood.threshold, r.ood.flagged);

  const alpha = card ? card.conformal.alpha : null;
  $("set-hint").textContent = setHint(alpha, r.decision);
  $("pred-set").replaceChildren(...r.prediction_set.map((i) => Object.assign(document.createElement("li"), { textContent: names[i] })));

  const host = $("chart-samples");
  if (r.samples) {
    sampleRanges(host, r.samples, r.probabilities, names);
    host.appendChild(Object.assign(document.createElement("p"), {
      className: "hint",
      textContent: `Per class, the line spans the lowest to the highest probability the ${r.samples.count} samples gave it; the dot is their average.`,
    }));
  } else {
    host.replaceChildren(Object.assign(document.createElement("p"), {
      className: "hint",
      textContent: `This model (${r.model.method}) gives a single sample, so there is no spread to show. Ensembles and MC-dropout models show here how much their samples disagree.`,
    }));
  }
  const mi = r.uncertainty.mutual_information;
  $("uncertainty").textContent = `predictive entropy ${fmt(r.uncertainty.predictive_entropy)} nats; mutual information ${mi === null ? "– (single-sample model)" : fmt(mi) + " nats"}`;
  $("model").textContent = `${r.model.name} v${r.model.version} (${r.model.method})`;
  $("latency").textContent = `${r.latency_ms.toFixed(1)} ms on the server`;
  $("request-id").textContent = r.request_id;
  $("fb-status").textContent = "";
  $("truth").value = ""; // a label chosen for the previous image must not be sent for this one
}
