"""`ember.ModelManager`: embed, load/unload, status, stats, keep-alive, budgets and dtypes."""

from __future__ import annotations

import datetime
import threading
import time

import numpy as np
import pytest

import ember
from conftest import cosine, real_model, reference, tiny_dir

BERT, MPNET, XLMR = (str(tiny_dir(k)) for k in ("bert", "mpnet", "xlm-roberta"))


def loaded(mm: ember.ModelManager) -> dict[str, dict]:
    return {s["id"]: s for s in mm.status() if s["loaded"]}


def test_embed_matches_embedder() -> None:
    mm = ember.ModelManager()
    texts = ["hello world", "a"]
    got = mm.embed(texts, model=BERT)
    assert got.shape == (2, 32) and got.dtype == np.float32 and got.flags.c_contiguous
    assert np.allclose(got, ember.Embedder(BERT).embed(texts), atol=1e-6)
    assert mm.embed("hello world", BERT).shape == (32,)
    assert mm.embed([], BERT).shape == (0, 32)
    cut = mm.embed(texts, BERT, normalize=False, dimensions=8, batch_size=1)
    assert np.allclose(cut, ember.Embedder(BERT).embed(texts, normalize=False)[:, :8], atol=1e-6)


def test_load_unload_status_and_stats() -> None:
    mm = ember.ModelManager(max_models=4)
    assert loaded(mm) == {}
    status = mm.load(BERT, dtype="fp16", keep_alive="5m")
    assert status["state"] == "loaded" and status["loaded"] is True
    (inst,) = status["instances"]
    assert inst["dtype"] == "fp16" and inst["bytes"] > 0 and inst["load_ms"] >= 0
    assert inst["keep_alive"] == 300 and inst["expires_at_ms"] > inst["last_used_ms"] > 0
    assert inst["loaded_at_ms"] > 0 and inst["pinned"] is False and inst["in_use"] == 0

    mm.embed(["x"], BERT)  # the default dtype (fp32): a second instance
    status = mm.model_status(BERT)
    assert sorted(i["dtype"] for i in status["instances"]) == ["fp16", "fp32"]
    assert status["bytes"] == sum(i["bytes"] for i in status["instances"])
    fp32 = next(i for i in status["instances"] if i["dtype"] == "fp32")
    assert fp32["bytes"] > inst["bytes"]  # fp16 holds fewer bytes

    stats = mm.stats()
    assert stats["loads"] == 2 and stats["models_loaded"] == 2 and stats["misses"] == 2
    assert stats["bytes_in_use"] == status["bytes"] and stats["bytes_budget"] is None
    assert stats["max_models"] == 4

    assert mm.unload(BERT, dtype="fp16") == 1
    assert [i["dtype"] for i in mm.model_status(BERT)["instances"]] == ["fp32"]
    assert mm.unload(BERT) == 1 and mm.unload(BERT) == 0
    assert loaded(mm) == {}
    stats = mm.stats()
    assert stats["evictions"]["unload"] == 2 and stats["bytes_in_use"] == 0
    # The model's own counters outlive its instances (the manager's are their sums).
    counters = mm.model_status(BERT)["counters"]
    assert (counters["misses"], counters["loads"], counters["load_failures"]) == (2, 2, 0)
    assert counters["evictions"] == stats["evictions"]


def test_hits_and_last_use() -> None:
    mm = ember.ModelManager()
    mm.embed(["a"], MPNET)
    before = mm.model_status(MPNET)["instances"][0]
    time.sleep(0.01)
    mm.embed(["b"], MPNET)
    after = mm.model_status(MPNET)["instances"][0]
    assert after["hits"] == before["hits"] + 1
    assert after["last_used_ms"] >= before["last_used_ms"]
    assert mm.stats()["hits"] >= 1


def test_max_models_evicts_least_recently_used() -> None:
    mm = ember.ModelManager(max_models=2)
    for model in (BERT, MPNET, BERT, XLMR):  # MPNET is now the least recently used
        mm.embed(["x"], model)
    assert set(loaded(mm)) == {BERT, XLMR}
    assert mm.stats()["evictions"]["lru"] == 1


def test_memory_budget_as_a_string_and_capacity_error() -> None:
    one = ember.Embedder(BERT).info["bytes"]
    mm = ember.ModelManager(max_memory=f"{one * 1.5 / 1000:.3f}KB")
    assert mm.stats()["bytes_budget"] == pytest.approx(one * 1.5, abs=1)
    mm.embed(["x"], BERT)
    mm.embed(["x"], MPNET)  # does not fit next to BERT: BERT is evicted
    assert set(loaded(mm)) == {MPNET}
    assert mm.stats()["evictions"]["memory"] == 1
    assert mm.stats()["bytes_in_use"] <= one * 1.5

    tight = ember.ModelManager(max_memory=1000)
    with pytest.raises(ember.CapacityError, match="budget") as err:
        tight.embed(["x"], BERT)
    assert isinstance(err.value, ember.EmberError)
    assert tight.stats()["load_failures"] == 1 and loaded(tight) == {}
    assert tight.model_status(BERT)["state"] == "failed"


def test_keep_alive_zero_unloads_after_the_call() -> None:
    mm = ember.ModelManager(keep_alive=0)
    mm.embed(["x"], BERT)
    assert loaded(mm) == {}
    mm = ember.ModelManager()
    mm.embed(["x"], BERT, keep_alive=0)
    assert loaded(mm) == {}
    mm.embed(["x"], BERT, keep_alive=-1)
    assert loaded(mm)[BERT]["instances"][0]["keep_alive"] == -1


def test_keep_alive_duration_expires_on_the_timer() -> None:
    mm = ember.ModelManager(keep_alive=datetime.timedelta(milliseconds=300))
    mm.load(BERT)
    assert BERT in loaded(mm)
    deadline = time.monotonic() + 10
    while BERT in loaded(mm) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert BERT not in loaded(mm)
    assert mm.stats()["evictions"]["keep_alive"] == 1


def test_pinned_models_stay_and_cannot_be_unloaded() -> None:
    mm = ember.ModelManager(max_models=1, pinned=[BERT])
    mm.load(BERT)
    with pytest.raises(ember.InvalidInputError, match="pinned"):
        mm.unload(BERT)
    with pytest.raises(ember.CapacityError):
        mm.embed(["x"], MPNET)  # the only slot is pinned
    assert set(loaded(mm)) == {BERT} and loaded(mm)[BERT]["instances"][0]["pinned"] is True


def test_catalog_is_copied_from_the_process() -> None:
    ember.register_model("tiny-bert-for-manager", tiny_dir("bert"))
    mm = ember.ModelManager()
    assert mm.embed("x", "tiny-bert-for-manager").shape == (32,)
    assert mm.model_status("tiny-bert-for-manager")["path"] == BERT


def test_per_model_dtypes_and_dtype_argument() -> None:
    mm = ember.ModelManager(dtypes={BERT: "bfloat16"})
    mm.embed(["x"], BERT)
    assert [i["dtype"] for i in mm.model_status(BERT)["instances"]] == ["bf16"]
    assert mm.model_status(BERT)["dtype"] == "bf16"
    mm.embed(["x"], BERT, "int8")
    assert sorted(i["dtype"] for i in mm.model_status(BERT)["instances"]) == ["bf16", "int8"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_memory": "2 parsecs"}, "not a size"),
        ({"max_memory": -1}, "must not be negative"),
        ({"max_memory": True}, "number of bytes"),
        ({"keep_alive": "soon"}, "not a duration"),
        ({"keep_alive": [1]}, "keep_alive"),
        ({"max_models": 0}, "max_models"),
        ({"dtypes": {"x": "fp8"}}, "unknown dtype `fp8`"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ember.InvalidInputError, match=message):
        ember.ModelManager(**kwargs)


def test_errors_from_calls() -> None:
    mm = ember.ModelManager()
    with pytest.raises(ember.ModelNotFoundError):
        mm.embed(["x"], "no-such-model")
    with pytest.raises(ember.ModelNotFoundError):
        mm.unload("no-such-model")
    with pytest.raises(ember.InvalidInputError, match="unknown dtype"):
        mm.load(BERT, dtype="fp64")
    with pytest.raises(ember.InvalidInputError, match="keep_alive"):
        mm.load(BERT, keep_alive="later")
    with pytest.raises(ember.InvalidInputError, match=r"input\[1\] is not a string"):
        mm.embed(["a", 2], BERT)
    with pytest.raises(ember.UnsupportedModelError):
        mm.load("nomic-embed-text-v2-moe")
    # A failed call still marks the end of its use.
    with pytest.raises(ember.InvalidInputError):
        mm.embed(["a"], BERT, dimensions=99)
    assert loaded(mm)[BERT]["instances"][0]["in_use"] == 0


def test_threads_share_one_load() -> None:
    mm = ember.ModelManager()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                mm.embed([f"text {i}" for i in range(20)], XLMR)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    assert mm.stats()["loads"] == 1


def test_repr() -> None:
    mm = ember.ModelManager(max_models=3, max_memory="1GiB", keep_alive="5m")
    assert repr(mm) == "ModelManager(max_models=3, max_memory=1073741824, keep_alive=300s)"


@pytest.mark.slow
def test_int8_and_half_dtypes_keep_minilm_vectors() -> None:
    real_model("all-MiniLM-L6-v2")
    ref = reference("all-MiniLM-L6-v2")
    texts, want = ref["texts"][:40], np.array(ref["normalized"][:40])
    mm = ember.ModelManager()
    for dtype, floor in (("fp16", 0.999), ("bf16", 0.995), ("int8", 0.99)):
        got = mm.embed(texts, "all-MiniLM-L6-v2", dtype)
        assert cosine(got, want).min() >= floor, dtype
