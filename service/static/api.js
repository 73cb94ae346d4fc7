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

// The longest the page waits for an answer (the server's own inference timeout is 10 s).
const TIMEOUT_MS = 20000;

// fetch, with the browser's bare "Failed to fetch" and a hung server said in words.
async function call(url, options) {
  try {
    return await fetch(url, { ...options, signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    const words = err.name === "TimeoutError" ? `no answer from the service within ${TIMEOUT_MS / 1000} s` : "the service did not answer: is it running, and is this page its own?";
    throw Object.assign(new Error(words), { code: err.name === "TimeoutError" ? "timeout" : "network_error" });
  }
}

export async function predict(blob, filename = "image.png") {
  const form = new FormData();
  form.append("image", blob, filename);
  return parse(await call("/v1/predict", { method: "POST", body: form, headers: headers() }));
}

export async function sendFeedback(requestId, label, note) {
  const body = JSON.stringify({ label, note: note || null });
  return parse(await call(`/v1/requests/${encodeURIComponent(requestId)}/feedback`, {
    method: "POST", body, headers: headers({ "Content-Type": "application/json" }),
  }));
}

export async function getJson(url) { return parse(await call(url, { headers: headers() })); }

// One of the page's own files (a gallery example) as a Blob, its failures said as the API's are.
export async function getBlob(url) {
  const resp = await call(url, {});
  if (!resp.ok) throw Object.assign(new Error(`the example could not be loaded (HTTP ${resp.status})`), { code: `http_${resp.status}` });
  return resp.blob();
}
