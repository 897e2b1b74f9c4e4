"""`--embedder minilm-onnx`: the default encoder's weights through ONNX Runtime give its vectors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tagger.paths import tagger_home  # noqa: E402
from tagger.stages.embedding import create_encoder  # noqa: E402

TEXTS = ["my guitar strings stay in tune", "dog treats for long walks " * 60, "洗发水很好用", "ok"]


def test_onnx_minilm_gives_the_torch_vectors():
    onnx, torch = create_encoder("minilm-onnx"), create_encoder("minilm")
    fast, reference = onnx.encode(TEXTS), torch.encode(TEXTS)
    assert fast.shape == reference.shape and onnx.window == torch.window
    assert (fast * reference).sum(axis=1).min() > 0.9999  # the long one is cut at the same 256 pieces
    exported = tagger_home() / "models" / "minilm-onnx" / "model.onnx"
    made = exported.stat().st_mtime_ns
    np.testing.assert_allclose(create_encoder("minilm-onnx").encode(TEXTS[:1]), fast[:1], atol=1e-6)
    assert exported.stat().st_mtime_ns == made  # exported once
