// The server's JSON API as the page uses it. Every path is relative (the page may sit under a
// reverse proxy's path prefix); the API key lives in this tab's sessionStorage and travels only
// as an `Authorization: Bearer` header, never in a URL.

const KEY = "ember.apiKey";
const ADMIN_KEY = "ember.adminKey";

/** The keys this tab holds. */
export const keys = {
  get api() {
    return sessionStorage.getItem(KEY) || "";
  },
  get admin() {
    return sessionStorage.getItem(ADMIN_KEY) || "";
  },
  setApi(k) {
    sessionStorage.setItem(KEY, k);
  },
  setAdmin(k) {
    sessionStorage.setItem(ADMIN_KEY, k);
  },
  forget() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ADMIN_KEY);
  },
};

/** An answer other than 2xx: the status and the server's `{error: {type, message}}`. */
export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/**
 * Calls `path` (relative, e.g. "api/v1/models") and returns `{data, ms, headers}`; `admin` sends
 * the admin key when one was given. Throws ApiError for a non-2xx answer.
 */
export async function call(path, { method = "GET", body, admin = false } = {}) {
  if (/^([a-z]+:|\/)/i.test(path)) throw new Error(`paths must be relative: ${path}`);
  const headers = { accept: "application/json" };
  const key = (admin && keys.admin) || keys.api;
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const started = performance.now();
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "same-origin",
    redirect: "error",
  });
  const text = await resp.text();
  const elapsed = performance.now() - started;
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = data && data.error;
    throw new ApiError(resp.status, e && e.type, (e && e.message) || `HTTP ${resp.status}`);
  }
  return { data, ms: elapsed, headers: resp.headers };
}
