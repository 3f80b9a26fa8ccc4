// Try and compare: one to three models over the user's texts (or a query and documents), side by
// side: each model's cosine-similarity matrix as a heat map, the nearest document to the query,
// latency and token counts; with a reranker, its order of the documents too (from
// `POST api/v1/rerank`; a loaded reranker is picked until the user chooses). Vectors come from
// `POST api/v1/embed`; cosines are computed here in double precision.

import { h, replace } from "./dom.js";
import * as fmt from "./format.js";

const MAX_MODELS = 3;
const EXAMPLE = [
  "A cat sat on the mat.",
  "A kitten was sleeping on the rug.",
  "Stock prices fell sharply on Monday.",
  "Markets dropped at the start of the week.",
].join("\n");
/** Heat map colours from 0 (and below) to 1. */
const STOPS = [
  [0, [255, 245, 235]],
  [0.4, [253, 174, 107]],
  [0.7, [230, 85, 13]],
  [1, [127, 39, 4]],
];

export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function colour(v) {
  const t = Math.min(1, Math.max(0, v));
  let i = 1;
  while (i < STOPS.length - 1 && t > STOPS[i][0]) i += 1;
  const [t0, c0] = STOPS[i - 1];
  const [t1, c1] = STOPS[i];
  const f = (t - t0) / (t1 - t0);
  return c0.map((c, k) => Math.round(c + (c1[k] - c) * f));
}

/** Relative luminance (WCAG 2). */
function luminance(rgb) {
  const [r, g, b] = rgb.map((c) => {
    const x = c / 255;
    return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** Black or white text, whichever contrasts more with `rgb` (always at least 4.5:1). */
function ink(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000" : "#fff";
}

function heatmap(model, labels, texts, vectors) {
  const head = h("tr", null, h("td", null), labels.map((l, j) => h("th", { scope: "col", title: texts[j] }, l)));
  const rows = vectors.map((a, i) =>
    h(
      "tr",
      null,
      h("th", { scope: "row", title: texts[i] }, labels[i]),
      vectors.map((b, j) => {
        const v = cosine(a, b);
        const rgb = colour(v);
        const td = h(
          "td",
          { dataset: { value: String(v), row: i, col: j }, title: `${labels[i]} · ${labels[j]}: ${v.toFixed(4)}` },
          v.toFixed(3),
        );
        td.style.background = `rgb(${rgb.join(",")})`;
        td.style.color = ink(rgb);
        return td;
      }),
    ),
  );
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "heatmap", dataset: { model } },
      h("caption", null, `Cosine similarity, ${model}`),
      h("thead", null, head),
      h("tbody", null, rows),
    ),
  );
}

function ranking(order, labels, texts, scoreName) {
  return h(
    "ol",
    { class: "ranking" },
    order.map(({ index, score }) =>
      h(
        "li",
        { dataset: { index, score } },
        h("strong", null, labels[index]),
        ` ${scoreName} ${score.toFixed(3)} `,
        h("span", { class: "muted" }, texts[index]),
      ),
    ),
  );
}

export class CompareView {
  /** `actions.embed(body)` and `actions.rerank(body)` call the server (`{data, ms, headers}`). */
  constructor(els, actions) {
    Object.assign(this, els);
    this.actions = actions;
    this.shape = "";
    this.picked = null;
    this.texts.value = EXAMPLE;
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.run();
    });
    for (const r of this.form.querySelectorAll('input[name="mode"]')) {
      r.addEventListener("change", () => this.showMode());
    }
    this.modelList.addEventListener("change", () => this.limitChoice());
    // Until the user picks a reranker (or none), the first loaded one is used.
    this.rerankChosen = false;
    this.reranker.addEventListener("change", () => {
      this.rerankChosen = true;
    });
    this.showMode();
  }

  get mode() {
    return this.form.querySelector('input[name="mode"]:checked').value;
  }

  showMode() {
    const query = this.mode === "query";
    this.queryRow.hidden = !query;
    this.textsLabel.textContent = query ? "Documents, one per line" : "Texts, one per line";
    if (query && !this.query.value) this.query.value = "Why did the markets go down?";
    this.rerankRow.hidden = !query || this.reranker.options.length <= 1;
  }

  /** The catalog changed: the model choices (embedders) and the rerankers, loaded ones first. */
  update(models) {
    const embedders = models.models.filter((m) => (m.kind || "embedder") === "embedder" && m.supported !== false);
    const rerankers = models.models
      .filter((m) => m.kind === "reranker" && m.supported !== false)
      .sort((a, b) => Number(b.loaded) - Number(a.loaded));
    const shape = JSON.stringify([embedders.map((m) => [m.id, m.loaded]), rerankers.map((m) => [m.id, m.loaded])]);
    // The `input_type`s each model has prompts for (the server's `tasks`); others refuse one.
    this.tasks = new Map(embedders.map((m) => [m.id, m.tasks || []]));
    if (shape === this.shape) return;
    this.shape = shape;
    if (this.picked === null) this.picked = new Set([models.default_model]);
    else this.picked = new Set(this.checkedIds());
    const sorted = [...embedders].sort((a, b) => Number(b.loaded) - Number(a.loaded));
    replace(
      this.modelList,
      sorted.map((m) =>
        h(
          "label",
          { class: "check" },
          h("input", {
            type: "checkbox",
            name: "model",
            value: m.id,
            checked: this.picked.has(m.id),
            dataset: { focus: `pick:${m.id}` },
          }),
          ` ${m.id}`,
          h("span", { class: "muted" }, m.loaded ? " loaded" : " loads on first use"),
        ),
      ),
    );
    const loaded = rerankers.find((m) => m.loaded);
    const current = this.rerankChosen || !loaded ? this.reranker.value : loaded.id;
    replace(
      this.reranker,
      h("option", { value: "" }, "No reranker"),
      rerankers.map((m) =>
        h("option", { value: m.id, selected: m.id === current }, `${m.id}${m.loaded ? " (loaded)" : " (loads on first use)"}`),
      ),
    );
    this.limitChoice();
    this.showMode();
  }

  checkedIds() {
    return [...this.modelList.querySelectorAll("input:checked")].map((i) => i.value);
  }

  /** At most three models: the unchecked boxes are disabled once three are checked. */
  limitChoice() {
    const full = this.checkedIds().length >= MAX_MODELS;
    for (const box of this.modelList.querySelectorAll("input")) box.disabled = full && !box.checked;
  }

  async run() {
    const ids = this.checkedIds();
    const query = this.mode === "query" ? this.query.value.trim() : null;
    const docs = this.texts.value.split("\n").map((t) => t.trim()).filter(Boolean);
    const problem =
      ids.length < 1 || ids.length > MAX_MODELS
        ? "Pick one to three models."
        : query === ""
          ? "Type a query."
          : docs.length < (query === null ? 2 : 1)
            ? query === null
              ? "Type at least two texts, one per line."
              : "Type at least one document."
            : null;
    this.error.textContent = problem || "";
    if (problem) return;
    const texts = query === null ? docs : [query, ...docs];
    const labels = query === null ? docs.map((_, i) => `T${i + 1}`) : ["Q", ...docs.map((_, i) => `D${i + 1}`)];
    const columns = ids.map((id) => h("section", { class: "card result", dataset: { model: id } }, h("h3", null, id), h("p", { class: "muted" }, "Waiting…")));
    const legend = h(
      "ol",
      { class: "texts-legend" },
      texts.map((t, i) => h("li", null, h("strong", null, labels[i]), " ", t)),
    );
    const grid = h("div", { class: "results" }, columns);
    replace(this.results, h("h3", null, "The texts"), legend, grid);
    this.runButton.disabled = true;
    this.results.setAttribute("aria-busy", "true");
    try {
      // One model at a time, so each one's latency is its own.
      for (const [k, id] of ids.entries()) {
        columns[k].replaceWith((columns[k] = await this.column(id, query, docs, texts, labels)));
      }
      if (query !== null && this.reranker.value) {
        grid.append(await this.rerankColumn(this.reranker.value, query, docs, labels.slice(1)));
      }
    } finally {
      this.runButton.disabled = false;
      this.results.removeAttribute("aria-busy");
    }
  }

  async column(id, query, docs, texts, labels) {
    const section = (...children) => h("section", { class: "card result", dataset: { model: id } }, h("h3", null, id), children);
    try {
      const tasks = (this.tasks && this.tasks.get(id)) || [];
      const as = (task) => (tasks.includes(task) ? { input_type: task } : {});
      const calls =
        query === null
          ? [await this.actions.embed({ model: id, input: docs })]
          : [
              await this.actions.embed({ model: id, input: [query], ...as("query") }),
              await this.actions.embed({ model: id, input: docs, ...as("document") }),
            ];
      const vectors = calls.flatMap((c) => c.data.embeddings);
      const tokens = calls.reduce((n, c) => n + c.data.usage.prompt_tokens, 0);
      const roundTrip = calls.reduce((n, c) => n + c.ms, 0);
      const server = calls.reduce((n, c) => n + Number(c.headers.get("x-total-time") || 0), 0);
      const inference = calls.reduce((n, c) => n + Number(c.headers.get("x-inference-time") || 0), 0);
      const d = calls[0].data;
      const timing = h(
        "p",
        { class: "lead timing" },
        `${d.dimension} dimensions · ${d.dtype} · `,
        h("span", { dataset: { tokens } }, `${fmt.count(tokens)} tokens`),
        ` · ${fmt.ms(roundTrip)} round trip (server ${fmt.ms(server)}, inference ${fmt.ms(inference)})`,
      );
      let nearest = null;
      if (query !== null) {
        const prompted = ["query", "document"].filter((t) => tasks.includes(t));
        const order = vectors
          .slice(1)
          .map((v, index) => ({ index, score: cosine(vectors[0], v) }))
          .sort((a, b) => b.score - a.score);
        const best = order[0];
        nearest = [
          h(
            "p",
            { class: "nearest", dataset: { index: best.index } },
            "Nearest to the query: ",
            h("strong", null, labels[best.index + 1]),
            ` “${docs[best.index]}” (${best.score.toFixed(3)})`,
          ),
          ranking(order, labels.slice(1), docs, "cosine"),
          h(
            "p",
            { class: "muted" },
            prompted.length
              ? `Embedded with the model's ${prompted.join(" and ")} prompts.`
              : "This model has no query or document prompts: every text is embedded as it is.",
          ),
        ];
      }
      return section(timing, nearest, heatmap(id, labels, texts, vectors));
    } catch (e) {
      return section(h("p", { class: "error", role: "alert" }, e.message));
    }
  }

  async rerankColumn(id, query, docs, labels) {
    const section = (...children) =>
      h("section", { class: "card result rerank", dataset: { model: id } }, h("h3", null, `${id} (reranker)`), children);
    try {
      const r = await this.actions.rerank({ model: id, query, documents: docs });
      const order = r.data.results.map((x) => ({ index: x.index, score: x.relevance_score }));
      return section(
        h("p", { class: "lead timing" }, `${fmt.ms(r.ms)} round trip`),
        h("p", { class: "nearest" }, "Most relevant: ", h("strong", null, labels[order[0].index]), ` “${docs[order[0].index]}”`),
        ranking(order, labels, docs, "score"),
      );
    } catch (e) {
      return section(h("p", { class: "error", role: "alert" }, e.message));
    }
  }
}
