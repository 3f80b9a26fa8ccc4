// The traffic view: per model, requests/s, p50 and p95 latency, queue depth and batch sizes over
// the last minutes, as small SVG charts drawn from `GET api/v1/stats` (the server's ring buffer
// of per-model time buckets; nothing here parses Prometheus text).

import { h, replace, s } from "./dom.js";
import * as fmt from "./format.js";

const W = 300;
const H = 64;

/** Polylines for `values` (nulls break the line) scaled to `max`. */
function lines(values, max, cls) {
  const n = values.length;
  const step = n > 1 ? W / (n - 1) : W;
  const out = [];
  let points = [];
  values.forEach((v, i) => {
    if (v == null) {
      if (points.length) out.push(points);
      points = [];
      return;
    }
    points.push(`${(i * step).toFixed(1)},${(H - 2 - ((H - 4) * v) / max).toFixed(1)}`);
  });
  if (points.length) out.push(points);
  return out.map((p) =>
    p.length === 1
      ? s("circle", { class: cls, cx: p[0].split(",")[0], cy: p[0].split(",")[1], r: 2 })
      : s("polyline", { class: cls, points: p.join(" "), "vector-effect": "non-scaling-stroke" }),
  );
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] != null) return values[i];
  return null;
}

function peak(values) {
  return values.reduce((m, v) => (v != null && v > m ? v : m), 0);
}

/** One small chart: its caption (current and peak values) and the SVG, described for readers. */
function chart(title, series, format, windowText) {
  const max = Math.max(...series.map((x) => peak(x.values)), 1e-9);
  const summary = series
    .map((x) => `${x.name} now ${format(last(x.values))}, peak ${format(peak(x.values))}`)
    .join("; ");
  const graph = s(
    "svg",
    {
      viewBox: `0 0 ${W} ${H}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `${title} over the ${windowText}: ${summary}`,
    },
    s("line", { class: "axis", x1: 0, y1: H - 1, x2: W, y2: H - 1, "vector-effect": "non-scaling-stroke" }),
    series.map((x) => lines(x.values, max * 1.05, x.cls)),
  );
  return h(
    "figure",
    { class: "chart" },
    h(
      "figcaption",
      null,
      h("span", { class: "title" }, title),
      h(
        "span",
        { class: "values" },
        series.map((x) =>
          h("span", { class: `key ${x.cls}` }, `${x.name} ${format(last(x.values))}`),
        ),
      ),
    ),
    graph,
    h("div", { class: "scale muted", "aria-hidden": "true" }, h("span", null, windowText.replace("last ", "") + " ago"), h("span", null, `peak ${format(max)}`), h("span", null, "now")),
  );
}

export class TrafficView {
  constructor({ summary, list }) {
    this.summary = summary;
    this.list = list;
  }

  update(models, stats) {
    const t = stats.traffic;
    const windowText = `last ${fmt.span(t.bucket_seconds * t.buckets * 1000)}`;
    const byModel = new Map(t.models.map((m) => [m.model, m]));
    const depth = new Map();
    for (const q of stats.queues) depth.set(q.model, (depth.get(q.model) || 0) + q.depth);
    const loaded = models.models.filter((m) => m.loaded).map((m) => m.id);
    const ids = [...new Set([...t.models.map((m) => m.model), ...loaded])];
    const total = t.models.reduce((n, m) => n + m.requests.reduce((a, b) => a + b, 0), 0);
    this.summary.textContent =
      `${fmt.count(total)} requests to models in the ${windowText}, ` +
      `in ${t.bucket_seconds}-second steps. Latency is the whole request as the server saw it.`;
    const cards = ids.map((id) => {
      const m = byModel.get(id) || empty(id, t.buckets);
      // The newest bucket is still filling: its rate is over the seconds it has run.
      const rates = m.requests.map((n, i) =>
        n / (i === m.requests.length - 1 ? Math.max(t.current_bucket_seconds, 1) : t.bucket_seconds),
      );
      const requests = m.requests.reduce((a, b) => a + b, 0);
      const errors = m.errors.reduce((a, b) => a + b, 0);
      return h(
        "article",
        { class: "card traffic", dataset: { model: id } },
        h("h3", null, id),
        h(
          "p",
          { class: "lead" },
          `${fmt.count(requests)} requests`,
          errors ? `, ${fmt.count(errors)} answered with an error` : "",
          ` · queue now ${depth.get(id) || 0}`,
        ),
        h(
          "div",
          { class: "charts" },
          chart("Requests per second", [{ name: "", values: rates, cls: "s1" }], fmt.rate, windowText),
          chart(
            "Latency",
            [
              { name: "p50", values: m.p50_ms, cls: "s1" },
              { name: "p95", values: m.p95_ms, cls: "s2" },
            ],
            fmt.ms,
            windowText,
          ),
          chart("Queue depth", [{ name: "max", values: m.queue_depth, cls: "s1" }], fmt.count, windowText),
          chart(
            "Texts per batch",
            [
              { name: "mean", values: m.batch_texts_mean, cls: "s1" },
              { name: "max", values: m.batch_texts_max, cls: "s2" },
            ],
            (v) => (v == null ? "–" : v < 10 ? v.toFixed(1) : fmt.count(Math.round(v))),
            windowText,
          ),
        ),
      );
    });
    replace(
      this.list,
      cards.length ? cards : h("p", { class: "muted" }, `No model is loaded and none was used in the ${windowText}.`),
    );
  }
}

function empty(id, n) {
  const zeros = new Array(n).fill(0);
  const nulls = new Array(n).fill(null);
  return {
    model: id,
    requests: zeros,
    errors: zeros,
    p50_ms: nulls,
    p95_ms: nulls,
    queue_depth: zeros,
    batch_texts_mean: nulls,
    batch_texts_max: nulls,
  };
}
