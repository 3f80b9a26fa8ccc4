"""`encode(..., precision=...)` against sentence-transformers' `quantize_embeddings` outputs
(`fixtures/reference/precision-all-MiniLM-L6-v2.json`, made by `make_precision.py`), and output
shapes and dtypes on the tiny models."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from conftest import REFERENCE, load_json, real_model

# all-MiniLM-L6-v2 has dead components (127, 223, 319, ...) whose values are ~1e-33 in every
# vector: their signs and buckets are rounding noise in any two implementations, PyTorch's and
# Ember's alike. Components whose reference value is this close to zero, or whose calibration
# range is this narrow, are not compared.
NOISE = 1e-4


@pytest.fixture(scope="module")
def fixture() -> dict:
    return load_json(REFERENCE / "precision-all-MiniLM-L6-v2.json")


@pytest.fixture(scope="module")
def st_vectors(fixture: dict) -> np.ndarray:
    """sentence-transformers' float vectors of the fixture's texts."""
    ref = load_json(REFERENCE / "all-MiniLM-L6-v2.json")
    return np.array(ref["normalized"][: len(fixture["texts"])], dtype=np.float32)


def unpack(packed: np.ndarray, signed: bool) -> np.ndarray:
    raw = (packed.astype(np.int16) + 128).astype(np.uint8) if signed else packed
    return np.unpackbits(raw, axis=-1)


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
@pytest.mark.parametrize("dim", [None, 100])
def test_binary_matches_sentence_transformers(
    fixture: dict, st_vectors: np.ndarray, precision: str, dim: int | None
) -> None:
    m = real_model("all-MiniLM-L6-v2")
    case = precision + ("_dim100" if dim else "")
    want = np.array(fixture["cases"][case], dtype=np.int8 if precision == "binary" else np.uint8)
    got = m.encode(fixture["texts"], precision=precision, truncate_dim=dim)
    assert got.dtype == want.dtype and got.shape == want.shape == (20, -(-(dim or 384) // 8))
    signed = precision == "binary"
    width = dim or 384
    bits_got, bits_want = unpack(got, signed)[:, :width], unpack(want, signed)[:, :width]
    meaningful = np.abs(st_vectors[:, :width]) >= NOISE
    assert meaningful.sum() > 0.95 * meaningful.size
    assert (bits_got == bits_want)[meaningful].all()
    # Today every bit matches, dead components included; allow a few flips there only.
    assert (bits_got != bits_want).sum() <= 4


@pytest.mark.parametrize("precision", ["int8", "uint8"])
@pytest.mark.parametrize("variant", ["", "_ranges", "_dim100"])
def test_int8_within_one_bucket(
    fixture: dict, st_vectors: np.ndarray, precision: str, variant: str
) -> None:
    m = real_model("all-MiniLM-L6-v2")
    want = np.array(fixture["cases"][precision + variant])
    kwargs: dict = {"precision": precision}
    if variant == "_ranges":
        kwargs["ranges"] = np.array(fixture["ranges"], dtype=np.float32)
    if variant == "_dim100":
        kwargs["truncate_dim"] = 100
    got = m.encode(fixture["texts"], **kwargs)
    assert got.dtype == np.dtype(precision) and got.shape == want.shape
    ranges = np.array(fixture["ranges"]) if variant == "_ranges" else None
    vectors = st_vectors[:, : want.shape[1]]
    if ranges is None:
        ranges = np.stack([vectors.min(axis=0), vectors.max(axis=0)])
    meaningful = ranges[1, : want.shape[1]] - ranges[0, : want.shape[1]] >= NOISE
    assert meaningful.sum() >= want.shape[1] - 8
    diff = np.abs(got.astype(np.int32) - want)[:, meaningful]
    assert diff.max() <= 1, f"max bucket difference {diff.max()}"
    assert (diff == 0).mean() > 0.99


def test_float32_is_the_plain_output(fixture: dict, st_vectors: np.ndarray) -> None:
    m = real_model("all-MiniLM-L6-v2")
    got = m.encode(fixture["texts"], precision="float32")
    assert got.dtype == np.float32
    assert np.array_equal(got, m.encode(fixture["texts"]))


def test_shapes_and_dtypes(tiny_bert: ember.Embedder) -> None:
    texts = ["hello world", "a", "the quick brown fox"]
    for precision, dtype, width in [
        ("float32", np.float32, 32),
        ("int8", np.int8, 32),
        ("uint8", np.uint8, 32),
        ("binary", np.int8, 4),
        ("ubinary", np.uint8, 4),
    ]:
        many = tiny_bert.encode(texts, precision=precision)
        assert many.shape == (3, width) and many.dtype == dtype and many.flags.c_contiguous
        empty = tiny_bert.encode([], precision=precision)
        assert empty.shape == (0, width) and empty.dtype == dtype
    assert tiny_bert.encode("a", precision="ubinary").shape == (4,)
    assert tiny_bert.encode(texts, precision="binary", truncate_dim=12).shape == (3, 2)
    # The query/document variants take the same options.
    assert tiny_bert.encode_query(texts, precision="int8").dtype == np.int8
    assert tiny_bert.encode_document(texts, precision="ubinary").shape == (3, 4)


def test_binary_is_the_sign_bits(tiny_bert: ember.Embedder) -> None:
    texts = ["hello world", "a", "the quick brown fox"]
    floats = tiny_bert.encode(texts)
    assert np.array_equal(tiny_bert.encode(texts, precision="ubinary"), np.packbits(floats > 0, -1))
    signed = tiny_bert.encode(texts, precision="binary")
    assert np.array_equal(signed, (np.packbits(floats > 0, -1).astype(np.int16) - 128))


def test_int8_calibrates_on_the_batch_or_the_given_ranges(tiny_bert: ember.Embedder) -> None:
    texts = ["hello world", "a", "the quick brown fox", "lazy dogs"]
    floats = tiny_bert.encode(texts)
    u8 = tiny_bert.encode(texts, precision="uint8")
    # Each dimension's minimum lands in bucket 0 and its maximum in the top bucket.
    assert (u8.min(axis=0) == 0).all() and (u8.max(axis=0) >= 254).all()
    i8 = tiny_bert.encode(texts, precision="int8")
    assert np.array_equal(i8.astype(np.int16), u8.astype(np.int16) - 128)
    ranges = np.stack([floats.min(axis=0) - 0.1, floats.max(axis=0) + 0.1])
    one = tiny_bert.encode("hello world", precision="uint8", ranges=ranges)
    assert one.shape == (32,) and one.dtype == np.uint8
    assert np.array_equal(one, tiny_bert.encode(texts, precision="uint8", ranges=ranges)[0])
    assert tiny_bert.encode(texts, precision="uint8", ranges=ranges.tolist()).dtype == np.uint8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int4"}, "unknown precision `int4`"),
        ({"precision": "int8", "ranges": np.zeros((3, 32))}, r"shape \(2, dimension\)"),
        ({"precision": "int8", "ranges": np.zeros((2, 31))}, "32 values per bound"),
        ({"precision": "binary", "ranges": np.zeros((2, 32))}, "int8/uint8 output only"),
    ],
)
def test_bad_precision_arguments(tiny_bert: ember.Embedder, kwargs: dict, message: str) -> None:
    with pytest.raises(ember.InvalidInputError, match=message):
        tiny_bert.encode(["a", "b"], **kwargs)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_single_input_needs_ranges(tiny_bert: ember.Embedder, precision: str) -> None:
    # sentence-transformers raises ValueError too: one vector cannot calibrate.
    with pytest.raises(ember.InvalidInputError, match="single embedding"):
        tiny_bert.encode("a", precision=precision)
    with pytest.raises(ValueError, match="single embedding"):
        tiny_bert.encode(["a"], precision=precision)
