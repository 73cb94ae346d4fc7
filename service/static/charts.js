// Small hand-written SVG charts for the demo and monitor pages (no library, works offline).
// Every chart is an <svg role="img"> with an aria-label that says what it shows in words.
const NS = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function frame(host, width, height, label, name) {
  host.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label, "data-chart": name }, host);
  el("title", {}, svg, label);
  return svg;
}

const pct = (v) => `${(100 * v).toFixed(v >= 0.995 || v < 0.005 ? 0 : 1)}%`;

// A calibrated probability, as the demo's headline gives it: a 0.99996 is not certainty, so it
// is never "100%" (the chart said 100% where the headline said over 99.9%).
export function probability(v) {
  if (v >= 0.9995) return ">99.9%";
  return v > 0 && v < 0.0005 ? "<0.1%" : `${(100 * v).toFixed(1)}%`;
}

// Whole percents, for a chart drawn narrow (a phone), still never 100% nor two different
// probabilities with one number: 0.502 and 0.498 read "50% / 50%" under a headline of 50.2%.
function wholePercents(probs) {
  const whole = probs.map((p) => (p >= 0.995 ? ">99%" : `${Math.round(100 * p)}%`));
  return whole.map((w, i) => (probs.some((q, j) => j !== i && q >= 0.1 && q !== probs[i] && whole[j] === w) ? probability(probs[i]) : w));
}

// Vertical bars, one per class; `top` (the predicted class) is drawn darker.
export function probabilityBars(host, probs, names, top) {
  const W = 420, H = 190, pad = 24, bw = (W - 2 * pad) / probs.length;
  const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  const label = "Calibrated probabilities: " + order.map(([p, i]) => `${names[i]} ${probability(p)}`).join(", ");
  const svg = frame(host, W, H, label, "probabilities");
  // Drawn narrower than its units (a phone), its labels grow (style.css) and would meet over
  // neighbouring bars: whole percents from 10 % up there ("45%", not "45.0%").
  const narrow = host.clientWidth > 0 && host.clientWidth < W;
  const whole = wholePercents(probs);
  const tag = (p, i) => (narrow && p >= 0.1 ? whole[i] : probability(p));
  const base = H - 22;
  el("line", { x1: pad, x2: W - pad, y1: base, y2: base, class: "axis" }, svg);
  let lifted = false; // a long label next to another at its height goes one line up
  probs.forEach((p, i) => {
    const h = Math.max(p * (base - 18), p > 0 ? 1 : 0), x = pad + i * bw + 4;
    el("rect", { x, y: base - h, width: bw - 8, height: h, class: i === top ? "bar top" : "bar" }, svg);
    el("text", { x: x + (bw - 8) / 2, y: H - 6, "text-anchor": "middle" }, svg, names[i]);
    const prev = probs[i - 1];
    lifted = narrow && !lifted && i > 0 && prev >= 0.005 && Math.abs(prev - p) * (base - 18) < 16 && (tag(p, i).length > 4 || tag(prev, i - 1).length > 4);
    if (p >= 0.005) el("text", { x: x + (bw - 8) / 2, y: base - h - 4 - (lifted ? 16 : 0), "text-anchor": "middle" }, svg, tag(p, i));
  });
}

// A score on a horizontal track with its threshold marked; red when over the threshold.
export function scoreGauge(host, name, score, threshold, flagged) {
  const W = 420, H = 58, pad = 10, scaleMax = Math.max(score, threshold) * 1.25 || 1;
  const x = (v) => pad + (Math.min(v, scaleMax) / scaleMax) * (W - 2 * pad);
  const [s, t] = apart(score, threshold);
  const label = `${name} score ${s} ${flagged ? "is above" : "is below"} its threshold ${t}`;
  const svg = frame(host, W, H, label, `gauge-${name}`);
  el("rect", { x: pad, y: 18, width: W - 2 * pad, height: 16, class: "track", rx: 3 }, svg);
  el("rect", { x: pad, y: 18, width: Math.max(x(score) - pad, 2), height: 16, rx: 3, class: flagged ? "bar flagged" : "bar ok" }, svg);
  // From the bar's top down (above it ran into the score's text), on a white halo that keeps the
  // dashes visible over a red or green bar.
  el("line", { x1: x(threshold), x2: x(threshold), y1: 18, y2: 42, class: "threshold-halo" }, svg);
  el("line", { x1: x(threshold), x2: x(threshold), y1: 18, y2: 42, class: "threshold" }, svg);
  // Near an edge the label grows inwards instead of being cut off by it.
  const anchor = x(threshold) < W / 4 ? "start" : x(threshold) > (3 * W) / 4 ? "end" : "middle";
  el("text", { x: x(threshold), y: 54, "text-anchor": anchor }, svg, `threshold ${t}`);
  el("text", { x: pad, y: 14 }, svg, `score ${s}`); // its font's full height below the top, at a phone's size too
}

// A score and its threshold, with as many digits as it takes to tell them apart: rounded
// alike, a flagged 0.434 read "score 0.43 is above its threshold 0.43".
export function apart(score, threshold) {
  for (let digits = 2; digits <= 8; digits++) {
    const s = fmt(score, digits), t = fmt(threshold, digits);
    if (s !== t || score === threshold) return [s, t];
  }
  return [String(score), String(threshold)];
}

// Per class: the range [min, max] the samples gave, and the averaged probability as a dot.
export function sampleRanges(host, spread, mean, names) {
  const W = 420, H = 170, pad = 24, bw = (W - 2 * pad) / mean.length, base = H - 22;
  const y = (v) => base - v * (base - 10);
  const widest = mean.map((_, i) => [spread.max[i] - spread.min[i], i]).sort((a, b) => b[0] - a[0])[0];
  const label = widest[0] < 0.005
    ? `${spread.count} samples, all agreeing: no class's probability varies by half a point`
    : `${spread.count} samples; widest disagreement on class ${names[widest[1]]}: ${probability(spread.min[widest[1]])} to ${probability(spread.max[widest[1]])}`;
  const svg = frame(host, W, H, label, "samples");
  el("line", { x1: pad, x2: W - pad, y1: base, y2: base, class: "axis" }, svg);
  // The scale: probability 0 at the axis, 1 at the top.
  el("text", { x: pad - 4, y: base, "text-anchor": "end" }, svg, "0");
  el("text", { x: pad - 4, y: y(1) + 8, "text-anchor": "end" }, svg, "1");
  mean.forEach((m, i) => {
    const cx = pad + i * bw + bw / 2;
    el("line", { x1: cx, x2: cx, y1: y(spread.min[i]), y2: y(spread.max[i]) + 0.01, class: "range" }, svg);
    el("circle", { cx, cy: y(m), r: 4, fill: "#14181f" }, svg);
    el("text", { x: cx, y: H - 6, "text-anchor": "middle" }, svg, names[i]);
  });
}

// Two histograms over the same bins side by side (live traffic vs validation reference).
export function pairedHistogram(host, edges, live, ref, name, what) {
  const W = 460, H = 200, pad = 30, n = live.length, bw = (W - 2 * pad) / n, base = H - 24;
  const top = Math.max(...live, ...ref, 0.01);
  const h = (v) => (v / top) * (base - 14);
  const label = `${what}: live traffic vs validation reference, ${n} bins from ${edges[0]} to ${edges[n]}`;
  const svg = frame(host, W, H, label, name);
  el("line", { x1: pad, x2: W - pad, y1: base, y2: base, class: "axis" }, svg);
  for (let i = 0; i < n; i++) {
    const x = pad + i * bw;
    el("rect", { x: x + 2, y: base - h(ref[i]), width: bw / 2 - 2, height: h(ref[i]), class: "bar ref" }, svg);
    el("rect", { x: x + bw / 2, y: base - h(live[i]), width: bw / 2 - 2, height: h(live[i]), class: "bar" }, svg);
    if (i % 2 === 0) el("text", { x, y: H - 8, "text-anchor": "middle" }, svg, edges[i].toFixed(1));
  }
  el("text", { x: W - pad, y: H - 8, "text-anchor": "middle" }, svg, edges[n].toFixed(1));
}

// Stacked bars over time, one stack per bucket, one colour per key.
export function stackedTimeline(host, buckets, keys) {
  const W = 920, H = 210, pad = 34, n = buckets.length, bw = (W - 2 * pad) / n, base = H - 24;
  const totals = buckets.map((b) => keys.reduce((s, k) => s + b[k], 0));
  const top = Math.max(...totals, 1);
  const sum = totals.reduce((a, b) => a + b, 0);
  const svg = frame(host, W, H, `Decisions over time: ${sum} requests in ${n} intervals`, "timeline");
  el("line", { x1: pad, x2: W - pad, y1: base, y2: base, class: "axis" }, svg);
  // The scale's label sits above the tallest stack, inside the chart: left of the axis it was
  // cut off on a phone, where it grows to 26 units ("180" read "80").
  const head = 36;
  el("text", { x: pad, y: 28 }, svg, `${top} per interval at most`);
  buckets.forEach((b, i) => {
    let y = base;
    for (const k of keys) {
      const h = (b[k] / top) * (base - head);
      if (h > 0) el("rect", { x: pad + i * bw + 1, y: y - h, width: bw - 2, height: h, class: `s-${k}` }, svg);
      y -= h;
    }
  });
  const t = (s) => new Date(s).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  el("text", { x: pad, y: H - 6 }, svg, t(buckets[0].start));
  el("text", { x: W - pad, y: H - 6, "text-anchor": "end" }, svg, "now");
}

// Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration.
export function reliabilityDiagram(host, rel) {
  const W = 460, H = 240, pad = 34, base = H - 26, side = base - 10, left = pad, bw = side / rel.bins.length;
  const svg = frame(host, W, H, `Reliability over ${rel.count} requests with feedback` + (rel.accuracy === null ? "" : `; accuracy ${pct(rel.accuracy)}`), "reliability");
  el("line", { x1: left, x2: left + side, y1: base, y2: base, class: "axis" }, svg);
  el("line", { x1: left, x2: left, y1: base, y2: base - side, class: "axis" }, svg);
  el("line", { x1: left, y1: base, x2: left + side, y2: base - side, class: "diag" }, svg);
  if (rel.count === 0) el("text", { x: left + side / 2, y: base - side / 2, "text-anchor": "middle" }, svg, "no true labels yet");
  rel.bins.forEach((b, i) => {
    if (b.accuracy === null) return;
    const h = b.accuracy * side;
    el("rect", { x: left + i * bw + 1, y: base - h, width: bw - 2, height: h, class: "bar" }, svg);
    el("text", { x: left + i * bw + bw / 2, y: base - h - 3, "text-anchor": "middle" }, svg, String(b.count));
  });
  el("text", { x: left, y: H - 8 }, svg, "confidence 0");
  el("text", { x: left + side, y: H - 8, "text-anchor": "end" }, svg, "1");
  el("text", { x: left + side + 8, y: base - side + 4 }, svg, "accuracy 1");
}

export function fmt(v, digits = 2) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0"; // not toPrecision's "0.0"
  const a = Math.abs(v);
  return a >= 100 && digits === 2 ? v.toFixed(0) : a >= 1 ? v.toFixed(digits) : v.toPrecision(digits);
}
