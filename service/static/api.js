// Calls to Vigil's own API. An optional API key (for servers that require one) lives in sessionStorage.
const KEY = "vigil-api-key";

export function apiKey() { return sessionStorage.getItem(KEY) || ""; }
export function setApiKey(v) { v ? sessionStorage.setItem(KEY, v) : sessionStorage.removeItem(KEY); }

function headers(extra = {}) {
  const k = apiKey();
  return k ? { ...extra, "X-API-Key": k } : extra;
}

// Every error has one shape: {"error": {"code", "message", "request_id"}}.
async function parse(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON: reported below */ }
  if (!resp.ok) {
    const e = (body && body.error) || { code: `http_${resp.status}`, message: resp.statusText, request_id: null };
    throw Object.assign(new Error(e.message), { code: e.code, requestId: e.request_id, status: resp.status });
  }
  return body;
}

export async function predict(blob, filename = "image.png") {
  const form = new FormData();
  form.append("image", blob, filename);
  return parse(await fetch("/v1/predict", { method: "POST", body: form, headers: headers() }));
}

export async function sendFeedback(requestId, label, note) {
  const body = JSON.stringify({ label, note: note || null });
  return parse(await fetch(`/v1/requests/${encodeURIComponent(requestId)}/feedback`, {
    method: "POST", body, headers: headers({ "Content-Type": "application/json" }),
  }));
}

export async function getJson(url) { return parse(await fetch(url, { headers: headers() })); }
