"""Each model card's hits and evictions in headless Chromium (the session's browser, `browser.py`)
against a real server over tiny models: after a load, requests, an unload and a reload done
through the API, the card shows the model's counters as `GET /api/v1/models/{id}` answers them
(kept across the unload), and the page's own refresh moves them on without a reload. A
screenshot is saved as the other page tests do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import Page
from test_ui import api

from conftest import catalog_server, tiny_dir

DEFAULT = "tiny-bert"
MODEL = "tiny-mpnet"
NEVER_USED = "all-MiniLM-L6-v2"

CARD_COUNTERS = """
const c = document.querySelector(`article.model[data-model='${arguments[0]}']`);
if (!c) return null;
const f = (name) => c.querySelector(`[data-field=${name}]`);
return {
  hits: Number(f('model-hits').dataset.count), hits_text: f('model-hits').textContent,
  loads: Number(f('model-loads').dataset.count),
  evictions: Number(f('evictions').dataset.count), evictions_text: f('evictions').textContent,
  reasons: f('eviction-reasons').textContent, title: f('evictions').title,
};
"""


@pytest.fixture(scope="module")
def counters_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An open server: the tiny BERT by default, the tiny MPNet in the catalog."""
    with catalog_server(
        tmp_path_factory.mktemp("ui-counters"), str(tiny_dir("bert")), {MODEL: tiny_dir("mpnet")}
    ) as base:
        yield base


def shown(page: Page, model: str, counters: dict[str, Any]) -> dict[str, Any]:
    """The card's figures once they show `counters` (the page refreshes on its own)."""
    want = (counters["hits"], counters["loads"], sum(counters["evictions"].values()))
    return page.wait(
        f"{model}'s card to show {want}",
        lambda: (
            (c := page.js(CARD_COUNTERS, model))
            and (c["hits"], c["loads"], c["evictions"]) == want
            and c
        ),
    )


def test_a_card_shows_the_model_s_hits_and_evictions_across_unload_and_reload(
    page: Page, counters_server: str
) -> None:
    base = counters_server
    embed = {"model": MODEL, "input": ["a cat on a mat", "stock prices fell"]}
    api(base, f"/api/v1/models/{MODEL}/load", {})
    for _ in range(3):
        api(base, "/api/v1/embed", embed)
    assert api(base, f"/api/v1/models/{MODEL}", method="DELETE")["unloaded"] == 1
    api(base, f"/api/v1/models/{MODEL}/load", {})
    api(base, "/api/v1/embed", embed)
    counters = api(base, f"/api/v1/models/{MODEL}")["counters"]
    assert (counters["hits"], counters["misses"], counters["loads"]) == (4, 2, 2)
    assert counters["evictions"] == {
        "lru": 0,
        "memory": 0,
        "keep_alive": 0,
        "unload": 1,
        "replaced": 0,
    }

    page.open(base + "/")
    page.wait_ready()
    card = shown(page, MODEL, counters)
    assert card["hits_text"] == "4 hits"
    assert card["evictions_text"] == "1 eviction"
    assert card["reasons"] == "(unloaded 1)"
    assert "unloaded on request: 1" in card["title"]
    # A model never asked for shows zeros.
    idle = page.js(CARD_COUNTERS, NEVER_USED)
    assert (idle["hits_text"], idle["evictions_text"], idle["reasons"]) == (
        "0 hits",
        "0 evictions",
        "",
    )

    # More requests and another unload through the API: the open page catches up on its own.
    page.js("window.__sameDocument = true")
    api(base, "/api/v1/embed", embed)
    api(base, f"/api/v1/models/{MODEL}", method="DELETE")
    counters = api(base, f"/api/v1/models/{MODEL}")["counters"]
    assert (counters["hits"], counters["evictions"]["unload"]) == (5, 2)
    card = shown(page, MODEL, counters)
    assert (card["hits_text"], card["evictions_text"], card["reasons"]) == (
        "5 hits",
        "2 evictions",
        "(unloaded 2)",
    )
    assert page.js("return window.__sameDocument === true")
    assert page.errors() == []
    # The screenshot shows the card.
    page.js(f"document.querySelector(`article.model[data-model='{MODEL}']`).scrollIntoView()")
