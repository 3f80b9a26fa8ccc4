// The models view: the memory budget as a stacked bar with the cache's counters, then one card
// per catalog model (facts, kind, state, its hits, loads and evictions by reason since the server
// started, each loaded dtype with its bytes, last use, keep-alive countdown and hits since it was
// loaded; load and unload buttons). Cards are rebuilt only when their structure changes; the
// figures that move on every refresh (the counters among them) are updated in place, so a
// refresh never steals keyboard focus or closes an open menu.

import { h, replace, slug } from "./dom.js";
import * as fmt from "./format.js";

const DTYPES = ["fp32", "fp16", "bf16", "int8"];
/** Segment colours of the memory bar: each at least 3:1 against the bar's track and white. */
const PALETTE = ["#b03a00", "#1f5fbf", "#2e7d32", "#7b3fa0", "#8a5a00", "#00695c"];

const STATE_LABEL = {
  loaded: "Loaded",
  loading: "Loading…",
  unloaded: "Not loaded",
  failed: "Load failed",
};

/** Why models leave the cache: the counter's name, a short label and what it means. */
const REASONS = [
  ["lru", "LRU", "model slots full (least recently used)"],
  ["memory", "memory", "memory budget full"],
  ["keep_alive", "idle", "idle past its keep-alive"],
  ["unload", "unloaded", "unloaded on request"],
  ["replaced", "replaced", "catalog entry changed"],
];

/** "1 hit", "1,204 hits". */
function plural(n, one, many = `${one}s`) {
  return `${fmt.count(n)} ${n === 1 ? one : many}`;
}

/**
 * Evictions by reason: the total, the reasons that happened ("LRU 1, idle 2") and every reason
 * spelled out (for a title).
 */
function evictions(e) {
  const total = REASONS.reduce((n, [k]) => n + (e[k] || 0), 0);
  const short = REASONS.filter(([k]) => e[k]).map(([k, label]) => `${label} ${fmt.count(e[k])}`);
  const long = REASONS.map(([k, , what]) => `${what}: ${fmt.count(e[k] || 0)}`);
  return { total, short: short.join(", "), long: long.join("\n") };
}

/** The order cards appear in: the default model, loaded ones, loading or failed ones, the rest. */
function rank(m, defaultId) {
  if (m.id === defaultId) return 0;
  return { loaded: 1, loading: 2, failed: 3 }[m.state] || 4;
}

function facts(m) {
  const parts = [
    m.architecture,
    m.dimension ? `${m.dimension} dimensions` : null,
    fmt.params(m.parameters_m) && `${fmt.params(m.parameters_m)} parameters`,
    m.size_mb ? `${fmt.bytes(m.size_mb * 1e6)} on disk (FP32)` : null,
    m.max_seq_length ? `${fmt.count(m.max_seq_length)} tokens max` : null,
    m.languages && m.languages.length ? m.languages.slice(0, 4).join(", ") : null,
    m.license || null,
  ];
  return parts.filter(Boolean).join(" · ");
}

export class ModelsView {
  /**
   * `memory`, `list`: containers; `actions.load(id, dtype)` and `actions.unload(id, dtype)`
   * return promises.
   */
  constructor({ memory, list, filter, loadedOnly }, actions) {
    this.memory = memory;
    this.list = list;
    this.filter = filter;
    this.loadedOnly = loadedOnly;
    this.actions = actions;
    this.cards = new Map();
    this.busy = new Map();
    this.errors = new Map();
    this.models = [];
    this.now = Date.now();
    filter.addEventListener("input", () => this.applyFilter());
    loadedOnly.addEventListener("change", () => this.applyFilter());
  }

  /** New data from the server; `now` is the server's clock. */
  update(models, stats, now) {
    this.models = models.models;
    this.defaultId = models.default_model;
    this.stats = stats;
    this.now = now;
    this.renderMemory();
    this.renderCards();
    this.applyFilter();
  }

  /** Moves the relative times on (called every second with the server's clock). */
  tick(now) {
    this.now = now;
    for (const el of this.list.querySelectorAll("[data-last-used]")) {
      el.textContent = `used ${fmt.ago(Number(el.dataset.lastUsed), now)}`;
    }
    for (const el of this.list.querySelectorAll("[data-expires]")) {
      const left = Number(el.dataset.expires) - now;
      el.textContent = left > 0 ? `unloads in ${fmt.span(left)}` : "unloading now";
    }
  }

  renderMemory() {
    const m = this.stats.manager;
    const held = [];
    for (const model of this.models) {
      for (const i of model.instances) held.push({ id: model.id, dtype: i.dtype, bytes: i.bytes });
    }
    const budget = m.bytes_budget;
    const scale = Math.max(budget || 0, m.bytes_in_use, 1);
    const label = budget
      ? `${fmt.bytes(m.bytes_in_use)} held of a ${fmt.bytes(budget)} budget`
      : `${fmt.bytes(m.bytes_in_use)} held (no memory budget set: --max-memory)`;
    const segments = held.map((x, i) => {
      const seg = h("span", { class: "segment", title: `${x.id} (${x.dtype}): ${fmt.bytes(x.bytes)}` });
      seg.style.width = `${(100 * x.bytes) / scale}%`;
      seg.style.background = PALETTE[i % PALETTE.length];
      return seg;
    });
    const described = held.map((x) => `${x.id} ${x.dtype} ${fmt.bytes(x.bytes)}`).join(", ");
    const legend = held.map((x, i) => {
      const dot = h("span", { class: "dot", "aria-hidden": "true" });
      dot.style.background = PALETTE[i % PALETTE.length];
      return h("li", null, dot, `${x.id} (${x.dtype}) `, h("span", { class: "muted" }, fmt.bytes(x.bytes)));
    });
    const e = evictions(m.evictions);
    const counters = [
      ["Cache hits", fmt.count(m.hits)],
      ["Misses", fmt.count(m.misses)],
      ["Loads", fmt.count(m.loads)],
      ["Load failures", fmt.count(m.load_failures)],
      ["Evictions", e.total ? `${fmt.count(e.total)} (${e.short})` : "0"],
    ];
    replace(
      this.memory,
      h("h3", null, "Memory"),
      h(
        "p",
        { class: "lead" },
        h("strong", { id: "memory-held", dataset: { bytes: m.bytes_in_use } }, label),
        ` · ${m.models_loaded} of ${m.max_models} model slots used`,
        m.bytes_draining ? ` · ${fmt.bytes(m.bytes_draining)} still held by evicted models` : null,
      ),
      h(
        "div",
        { class: "stack", role: "img", "aria-label": `Memory held: ${described || "nothing"}; ${label}` },
        segments,
      ),
      h("ul", { class: "legend" }, legend),
      h(
        "dl",
        { class: "counters" },
        counters.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v))),
      ),
    );
  }

  renderCards() {
    const ordered = [...this.models].sort((a, b) => rank(a, this.defaultId) - rank(b, this.defaultId));
    const seen = new Set();
    for (const m of ordered) {
      seen.add(m.id);
      const shape = JSON.stringify([
        m.state,
        m.instances.map((i) => [i.dtype, i.pinned]),
        m.error,
        this.busy.get(m.id) || "",
        this.errors.get(m.id) || "",
        m.id === this.defaultId,
      ]);
      let card = this.cards.get(m.id);
      if (!card) {
        card = h("article", { class: "card model", dataset: { model: m.id } });
        this.cards.set(m.id, card);
      }
      if (card.dataset.shape !== shape) {
        card.dataset.shape = shape;
        this.buildCard(card, m);
      }
      this.fillFigures(card, m);
      this.list.append(card); // moves it into sorted order
    }
    for (const [id, card] of this.cards) {
      if (!seen.has(id)) {
        card.remove();
        this.cards.delete(id);
      }
    }
    this.tick(this.now);
  }

  buildCard(card, m) {
    const key = slug(m.id);
    const kind = m.kind || "embedder";
    const busy = this.busy.get(m.id);
    const loadBusy = busy === "load";
    const dtypeSelect = h(
      "select",
      { id: `dtype-${key}`, dataset: { focus: `dtype:${m.id}` } },
      DTYPES.map((d) => h("option", { value: d, selected: d === m.dtype }, d)),
    );
    const load = h(
      "button",
      {
        type: "button",
        class: "primary",
        disabled: Boolean(busy) || !m.supported,
        dataset: { focus: `load:${m.id}`, action: "load" },
        onclick: () => this.run(m.id, "load", () => this.actions.load(m.id, dtypeSelect.value)),
      },
      loadBusy ? "Loading…" : "Load",
    );
    const instances = m.instances.map((i) =>
      h(
        "li",
        { dataset: { dtype: i.dtype } },
        h("strong", null, i.dtype),
        h("span", { class: "bytes", dataset: { field: "bytes" } }),
        h("span", { class: "bar", "aria-hidden": "true" }, h("span", { class: "fill" })),
        h("span", { dataset: { field: "last" } }),
        h("span", { dataset: { field: "keep" } }),
        h("span", { dataset: { field: "hits" }, title: "Hits since this dtype was loaded" }),
        h(
          "button",
          {
            type: "button",
            disabled: i.pinned || Boolean(busy),
            title: i.pinned ? "Pinned models stay loaded" : null,
            "aria-label": `Unload ${m.id} (${i.dtype})`,
            dataset: { focus: `unload:${m.id}:${i.dtype}`, action: "unload" },
            onclick: () => this.run(m.id, "unload", () => this.actions.unload(m.id, i.dtype)),
          },
          busy === "unload" ? "Unloading…" : "Unload",
        ),
      ),
    );
    const error = this.errors.get(m.id) || m.error;
    replace(
      card,
      h(
        "header",
        null,
        h("h3", { id: `model-${key}` }, m.id),
        h("span", { class: `badge kind ${kind}` }, kind),
        h("span", { class: `badge state ${m.state}`, dataset: { field: "state" } }, STATE_LABEL[m.state] || m.state),
        m.id === this.defaultId ? h("span", { class: "badge" }, "default") : null,
        m.supported === false ? h("span", { class: "badge failed" }, "not supported yet") : null,
      ),
      m.display_name && m.display_name !== m.id ? h("p", { class: "muted name" }, m.display_name) : null,
      h("p", { class: "facts" }, facts(m)),
      m.description ? h("p", { class: "desc" }, m.description) : null,
      h(
        "p",
        { class: "usage", title: "Since the server started, over every dtype" },
        h("span", { dataset: { field: "model-hits" } }),
        " · ",
        h("span", { dataset: { field: "model-loads" } }),
        " · ",
        h("span", { dataset: { field: "evictions" } }),
        " ",
        h("small", { class: "muted", dataset: { field: "eviction-reasons" } }),
      ),
      instances.length
        ? h("ul", { class: "instances", "aria-label": `Loaded instances of ${m.id}` }, instances)
        : null,
      h(
        "div",
        { class: "row actions" },
        h("label", { for: `dtype-${key}` }, "dtype"),
        dtypeSelect,
        load,
      ),
      error ? h("p", { class: "error", role: "alert" }, error) : null,
    );
  }

  /** The figures that change between refreshes, written in place. */
  fillFigures(card, m) {
    this.fillCounters(card, m.counters);
    const budget = this.stats.manager.bytes_budget;
    const scale = Math.max(budget || 0, this.stats.manager.bytes_in_use, 1);
    for (const i of m.instances) {
      const li = card.querySelector(`li[data-dtype="${i.dtype}"]`);
      if (!li) continue;
      const bytes = li.querySelector('[data-field="bytes"]');
      bytes.textContent = fmt.bytes(i.bytes);
      bytes.dataset.bytes = i.bytes;
      li.querySelector(".fill").style.width = `${(100 * i.bytes) / scale}%`;
      const last = li.querySelector('[data-field="last"]');
      last.dataset.lastUsed = i.last_used_ms;
      const keep = li.querySelector('[data-field="keep"]');
      if (i.pinned) {
        delete keep.dataset.expires;
        keep.textContent = "pinned";
      } else if (i.expires_at_ms != null) {
        keep.dataset.expires = i.expires_at_ms;
      } else {
        delete keep.dataset.expires;
        keep.textContent = "kept loaded";
      }
      li.querySelector('[data-field="hits"]').textContent = `${fmt.count(i.hits)} hits`;
    }
  }

  /**
   * The model's hits, loads and evictions since the server started (over all its dtypes, kept
   * across evictions and reloads); the reasons in small text, all of them in the title.
   */
  fillCounters(card, c) {
    const hits = card.querySelector('[data-field="model-hits"]');
    hits.textContent = plural(c.hits, "hit");
    hits.dataset.count = c.hits;
    hits.title = `${plural(c.misses, "miss", "misses")} (uses that found it not loaded)`;
    const loads = card.querySelector('[data-field="model-loads"]');
    loads.textContent = plural(c.loads, "load") + (c.load_failures ? `, ${c.load_failures} failed` : "");
    loads.dataset.count = c.loads;
    const e = evictions(c.evictions);
    const total = card.querySelector('[data-field="evictions"]');
    total.textContent = plural(e.total, "eviction");
    total.dataset.count = e.total;
    total.title = e.long;
    const reasons = card.querySelector('[data-field="eviction-reasons"]');
    reasons.textContent = e.short ? `(${e.short})` : "";
    reasons.title = e.long;
  }

  /** Runs a load or unload with the card marked busy, then shows its error if any. */
  async run(id, what, action) {
    this.busy.set(id, what);
    this.errors.delete(id);
    this.refreshCard(id);
    try {
      await action();
    } catch (e) {
      this.errors.set(id, e.message);
    } finally {
      this.busy.delete(id);
      this.refreshCard(id);
    }
  }

  refreshCard(id) {
    const m = this.models.find((x) => x.id === id);
    const card = this.cards.get(id);
    if (m && card) {
      card.dataset.shape = "";
      this.renderCards();
    }
  }

  applyFilter() {
    const words = this.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const loadedOnly = this.loadedOnly.checked;
    for (const m of this.models) {
      const card = this.cards.get(m.id);
      if (!card) continue;
      const text = [m.id, m.display_name, m.architecture, m.kind, ...(m.languages || []), ...(m.aliases || [])]
        .join(" ")
        .toLowerCase();
      card.hidden = (loadedOnly && !m.loaded) || !words.every((w) => text.includes(w));
    }
  }
}
