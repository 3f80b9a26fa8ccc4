// Ember's page: the tabs, the API key, and the refresh loop feeding the three views. The page is
// public; the data is not. When the server has API keys (`ui/config.json` says so, without
// saying anything else), nothing is fetched until a key is entered; a 401 asks again.

import { call, keys, ApiError } from "./api.js";
import { CompareView } from "./compare.js";
import { ModelsView } from "./models.js";
import { TrafficView } from "./traffic.js";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

const tabs = ["models", "traffic", "compare"];
let config = { auth: { api_key: false, admin_key: false } };
let timer = null;
let refreshes = 0;
/** Server clock minus this browser's, from the last refresh. */
let skew = 0;
let pendingAdmin = null;

function serverNow() {
  return Date.now() + skew;
}

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// Tabs: arrow keys move between them (roving tabindex), Enter/Space/click select; the URL's
// fragment remembers the view.
function select(name, focus = false) {
  for (const t of tabs) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`view-${t}`).hidden = !on || document.body.dataset.state !== "ready";
    if (on && focus) tab.focus();
  }
  document.body.dataset.view = name;
  history.replaceState(null, "", `#${name}`);
}

function current() {
  return document.body.dataset.view || "models";
}

for (const [i, t] of tabs.entries()) {
  const tab = $(`tab-${t}`);
  tab.addEventListener("click", () => select(t));
  tab.addEventListener("keydown", (e) => {
    const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i };
    if (e.key in moves) {
      e.preventDefault();
      select(tabs[(i + moves[e.key] + tabs.length) % tabs.length], true);
    }
  });
}

const models = new ModelsView(
  { memory: $("memory"), list: $("models"), filter: $("model-filter"), loadedOnly: $("loaded-only") },
  {
    load: (id, dtype) =>
      admin(() => call(`api/v1/models/${encodeURIComponent(id)}/load`, { method: "POST", body: { dtype }, admin: true })),
    unload: (id, dtype) =>
      admin(() =>
        call(`api/v1/models/${encodeURIComponent(id)}?dtype=${encodeURIComponent(dtype)}`, {
          method: "DELETE",
          admin: true,
        }),
      ),
  },
);
const traffic = new TrafficView({ summary: $("traffic-summary"), list: $("traffic") });
const compare = new CompareView(
  {
    form: $("compare-form"),
    modelList: $("compare-model-list"),
    query: $("query"),
    queryRow: $("query-row"),
    texts: $("texts"),
    textsLabel: $("texts-label"),
    reranker: $("reranker"),
    rerankRow: $("rerank-row"),
    runButton: $("compare-run"),
    error: $("compare-error"),
    results: $("compare-results"),
  },
  {
    embed: (body) => call("api/v1/embed", { method: "POST", body }),
    rerank: (body) => call("api/v1/rerank", { method: "POST", body }),
  },
);

/** Shows the admin key form and resolves once a key is given (rejects on Cancel). */
function askAdmin() {
  $("admin").hidden = false;
  $("admin-key").focus();
  return new Promise((resolve, reject) => {
    pendingAdmin = { resolve, reject };
  });
}

/**
 * Runs an admin action. When the server has an admin key (`ui/config.json` says so) and this tab
 * holds none, it is asked for first; a 401 or 403 (a wrong key) asks again and retries once. The
 * data is refreshed afterwards either way.
 */
async function admin(action) {
  try {
    if (config.auth.admin_key && !keys.admin) await askAdmin();
    try {
      return await action();
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 401 && e.status !== 403)) throw e;
      await askAdmin();
      return await action();
    }
  } finally {
    refresh();
  }
}

$("admin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  keys.setAdmin($("admin-key").value.trim());
  $("admin-key").value = "";
  $("admin").hidden = true;
  if (pendingAdmin) pendingAdmin.resolve();
  pendingAdmin = null;
});

$("admin-cancel").addEventListener("click", () => {
  $("admin").hidden = true;
  if (pendingAdmin) pendingAdmin.reject(new Error("Needs the admin key."));
  pendingAdmin = null;
});

function showAuth(message) {
  document.body.dataset.state = "auth";
  stop();
  $("auth").hidden = false;
  $("session").hidden = true;
  $("auth-error").textContent = message || "";
  for (const t of tabs) $(`view-${t}`).hidden = true;
  $("api-key").focus();
}

function showData() {
  document.body.dataset.state = "ready";
  $("auth").hidden = true;
  $("session").hidden = !keys.api;
  select(current());
}

$("auth-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  keys.setApi($("api-key").value.trim());
  $("api-key").value = "";
  $("auth-error").textContent = "";
  await refresh();
});

$("forget-key").addEventListener("click", () => {
  keys.forget();
  showAuth("");
});

async function refresh() {
  try {
    // One read gives the catalog, memory, queues and traffic at the same moment.
    const st = (await call("api/v1/stats")).data;
    const catalog = { default_model: st.default_model, models: st.models };
    skew = st.now_ms - Date.now();
    if (document.body.dataset.state !== "ready") showData();
    models.update(catalog, st, serverNow());
    traffic.update(catalog, st);
    compare.update(catalog);
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    $("refreshed").textContent = `Refreshed every ${REFRESH_MS / 1000} s · last at ${new Date().toLocaleTimeString("en-GB")}`;
    status("");
    start();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      const tried = Boolean(keys.api);
      keys.forget();
      showAuth(tried ? "That key was not accepted." : "");
    } else {
      status(`Cannot refresh: ${e.message}`, true);
      start();
    }
  }
}

function start() {
  clearTimeout(timer);
  if (!document.hidden && document.body.dataset.state === "ready") timer = setTimeout(refresh, REFRESH_MS);
}

function stop() {
  clearTimeout(timer);
  timer = null;
}

document.addEventListener("visibilitychange", () => (document.hidden ? stop() : refresh()));
setInterval(() => {
  if (document.body.dataset.state === "ready") models.tick(serverNow());
}, 1000);

async function boot() {
  const hash = location.hash.slice(1);
  document.body.dataset.view = tabs.includes(hash) ? hash : "models";
  try {
    config = (await call("ui/config.json")).data;
    $("version").textContent = `v${config.version}`;
  } catch (e) {
    status(`Cannot reach the server: ${e.message}`, true);
  }
  if (config.auth.api_key && !keys.api) {
    showAuth("");
    return;
  }
  await refresh();
}

boot();
