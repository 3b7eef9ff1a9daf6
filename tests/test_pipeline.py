"""The data layer end to end on real audio: prepare, then embed, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.cli import app
from emodiff.data import ravdess_sample

SHARED_RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"
runner = CliRunner()


@pytest.mark.skipif(not SHARED_RAVDESS.is_dir(), reason="../shared/corpora/ravdess not present")
def test_prepare_and_embed_the_real_ravdess_subset(tmp_path):
    store = str(tmp_path / "s.h5")
    done = runner.invoke(app, ["prepare", "ravdess", str(SHARED_RAVDESS), "--store", store])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["embed", "--store", store])
    assert done.exit_code == 0, done.output
    with st.open_store(Path(store)) as f:
        utt = st.read_table(f["corpora/ravdess/utterances"])
        emb = f["embeddings/all-MiniLM-L6-v2/ravdess"]
        assert emb["pooled"].shape == (672, 384) and emb["pooled"].dtype == np.float32
        assert emb["tokens"].shape[0] == 672 and emb["tokens"].shape[2] == 384
        texts = emb["text"].asstr()[()]
        assert np.isfinite(emb["pooled"][()]).all()
    # row i of the embeddings is utterance i: its text carries that row's transcript and speaker
    for i in (0, 300, 671):
        assert utt["text"][i] in texts[i] and f"({utt['speaker'][i]})" in texts[i]


def test_cli_embed_on_the_bundled_sample(tmp_path):
    store = str(tmp_path / "s.h5")
    prepared = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", store, "--limit", "8"])
    assert prepared.exit_code == 0
    done = runner.invoke(app, ["embed", "--corpus", "ravdess", "--store", store, "--batch-size", "3"])
    assert done.exit_code == 0, done.output
    out = " ".join(done.stdout.split())
    assert "ravdess" in out and "384" in out and "written" in out
    again = runner.invoke(app, ["embed", "--store", store], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "already there" in " ".join(again.stdout.split())
    missing = runner.invoke(app, ["embed", "--corpus", "iemocap", "--store", store])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert "corpus iemocap is not prepared" in " ".join(missing.stderr.split())
    bad = runner.invoke(app, ["embed", "--model", str(tmp_path / "no-model"), "--store", store, "--overwrite"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "no-model" in bad.stderr
