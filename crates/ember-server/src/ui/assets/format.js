// Numbers and times for people: sizes in kB/MB/GB (powers of 1000, as the server's "2GB"),
// latencies in ms or s, ages and countdowns as "12 s", "3 min", "2 h 5 min".

const counts = new Intl.NumberFormat("en");

/** A count with thousands separators: 12,345. */
export function count(n) {
  return n == null ? "–" : counts.format(n);
}

/** Bytes as B, kB, MB, GB or TB, with one decimal under 100 units. */
export function bytes(n) {
  if (n == null || !Number.isFinite(n)) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  const text = i === 0 || v >= 100 ? String(Math.round(v)) : v.toFixed(1);
  return `${text} ${units[i]}`;
}

/** Milliseconds: "0.42 ms", "4.2 ms", "123 ms", "1.25 s". */
export function ms(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 10) return `${v.toFixed(1)} ms`;
  if (v < 1000) return `${Math.round(v)} ms`;
  return `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
}

/** A span of time: "0 s", "42 s", "3 min 5 s", "2 h 5 min", "3 days". */
export function span(milliseconds) {
  const s = Math.max(0, Math.round(milliseconds / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} days`;
}

/** How long ago `thenMs` was, seen at `nowMs`: "just now", "12 s ago". */
export function ago(thenMs, nowMs) {
  const d = nowMs - thenMs;
  return d < 1000 ? "just now" : `${span(d)} ago`;
}

/** A rate per second: "0", "0.2/s", "12/s". */
export function rate(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  if (v === 0) return "0/s";
  if (v < 10) return `${v.toFixed(1)}/s`;
  return `${counts.format(Math.round(v))}/s`;
}

/** Millions of parameters: "22.7 M", "1.1 B". */
export function params(millions) {
  if (!millions) return null;
  return millions >= 1000 ? `${(millions / 1000).toFixed(1)} B` : `${millions.toFixed(1)} M`;
}
