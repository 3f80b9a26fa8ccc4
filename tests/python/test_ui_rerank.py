"""The web page's try-and-compare with a reranker, in headless Chromium (the session's browser,
`browser.py`) against a real server holding the tiny BERT embedder and the tiny cross-encoder:
the rerank order and scores the page shows are what `POST /api/v1/rerank` answers, and they are
CrossEncoder's (the fixture's ranking). A screenshot is saved as the other page tests do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import Page
from test_ui import api, choose

from conftest import catalog_server, load_json, tiny_dir

EMBEDDER = "tiny-bert"
RERANKER = "tiny-cross"


@pytest.fixture(scope="module")
def rerank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An open server: the tiny BERT by default, the tiny cross-encoder loaded once it is up."""
    catalog = {EMBEDDER: tiny_dir("bert"), RERANKER: tiny_dir("cross-bert")}
    with catalog_server(tmp_path_factory.mktemp("ui-rerank"), EMBEDDER, catalog) as base:
        assert api(base, f"/api/v1/models/{RERANKER}/load", {})["loaded"]
        yield base


def test_a_loaded_reranker_orders_the_documents_as_the_api_does(
    page: Page, rerank_server: str
) -> None:
    ref = load_json(tiny_dir("cross-bert") / "expected.json")
    # The page drops empty lines: rank the fixture's non-empty documents.
    docs = [d for d in ref["documents"] if d.strip()]
    page.open(rerank_server + "/#compare")
    page.wait_ready()
    choose(page, [EMBEDDER], "query")
    # The loaded reranker is offered, and picked, without the user choosing it.
    page.wait(
        "the reranker choice",
        lambda: page.js("return document.getElementById('reranker').value") == RERANKER,
    )
    assert not page.js("return document.getElementById('rerank-row').hidden")
    query = page.driver.find_element("id", "query")
    query.clear()
    query.send_keys(ref["query"])
    box = page.driver.find_element("id", "texts")
    box.clear()
    box.send_keys("\n".join(docs))
    page.driver.find_element("id", "compare-run").click()
    shown = page.wait(
        "the rerank order",
        lambda: page.js(
            "if (document.querySelector('#compare-results[aria-busy]')) return null;"
            "const s = document.querySelector(`section.rerank[data-model='${arguments[0]}']`);"
            "return s && [...s.querySelectorAll('ol.ranking li')]"
            ".map(li => [Number(li.dataset.index), Number(li.dataset.score),"
            " li.querySelector('strong').textContent])",
            RERANKER,
        ),
        timeout=120,
    )
    answer = api(
        rerank_server,
        "/api/v1/rerank",
        {"model": RERANKER, "query": ref["query"], "documents": docs},
    )
    assert [s[0] for s in shown] == [r["index"] for r in answer["results"]]
    for (index, score, label), r in zip(shown, answer["results"], strict=True):
        assert abs(score - r["relevance_score"]) < 1e-6
        assert label == f"D{index + 1}"
    # And that order is CrossEncoder's (the fixture ranks the same documents plus an empty one).
    position = {d: i for i, d in enumerate(docs)}
    ranked = [ref["documents"][w["index"]] for w in ref["rank"]]
    want = [position[d] for d in ranked if d.strip()]
    assert [s[0] for s in shown] == want
    text = page.js(
        "return document.querySelector(`section.rerank[data-model='${arguments[0]}']`).textContent",
        RERANKER,
    )
    assert "Most relevant" in text
    assert page.errors() == []
