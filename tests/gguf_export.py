"""Test helper: write a Hugging Face Llama folder (with a byte-level BPE tokenizer, as pdgen-tiny's)
as an F32 GGUF file with the ``gguf`` package's writer, the way llama.cpp's ``convert_hf_to_gguf.py``
does, so that the GGUF model source is tested on a file the tests make themselves.

- metadata: ``general.architecture = llama`` and the ``llama.*`` hyperparameters transformers maps
  back to a ``LlamaConfig`` (``transformers/integrations/ggml.py``, ``GGUF_CONFIG_MAPPING``);
- tokenizer: ``tokenizer.ggml.model = gpt2`` with tokens, token types (special tokens CONTROL),
  merges and the bos/eos/unk/pad ids (``integrations/gguf/gguf_tokenizer_mapping.py``);
- tensors: HF names mapped with gguf's own ``get_tensor_name_map`` (the map transformers reverses),
  Q and K rows permuted as llama.cpp does (``LlamaTensorProcessor`` un-permutes them), and no
  ``output.weight`` when the embeddings are tied (transformers infers ``tie_word_embeddings`` from
  its absence).

Not product code: pdgen reads GGUF files, it does not write them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order: each head's rotary halves interleaved (convert_hf_to_gguf.py,
    ``LlamaModel.permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_llama_gguf(hf_folder: Path, out_file: Path, name: str = "pdgen-tiny") -> Path:
    """Write the Llama at ``hf_folder`` (config, safetensors, ``tokenizer.json``) to ``out_file``
    as an F32 GGUF."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    hf_folder = Path(hf_folder)
    cfg = AutoConfig.from_pretrained(hf_folder)
    assert cfg.model_type == "llama", f"{hf_folder}: not a Llama ({cfg.model_type})"
    tok_json = json.loads((hf_folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert tok_json["model"]["type"] == "BPE", "only byte-level BPE tokenizers are exported"
    vocab = dict(tok_json["model"]["vocab"])
    for added in tok_json.get("added_tokens", ()):
        vocab[added["content"]] = added["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "token ids must be 0..n-1"
    special = {a["content"] for a in tok_json.get("added_tokens", ()) if a.get("special")}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]
    tok_cfg = json.loads((hf_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or getattr(cfg, "rope_theta", 10000.0)

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_file), "llama")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(rope))
    w.add_vocab_size(cfg.vocab_size)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # GPT-2's split regex: what ByteLevel(use_regex=True) applies
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    for key, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                     ("unk_token", w.add_unk_token_id), ("pad_token", w.add_pad_token_id)):
        if tok_cfg.get(key) in vocab:
            add(vocab[tok_cfg[key]])
    if tok_cfg.get("chat_template"):
        w.add_chat_template(tok_cfg["chat_template"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    state = load_file(str(next(hf_folder.glob("*.safetensors"))))
    for hf_name, t in sorted(state.items()):
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        base, suffix = hf_name.rsplit(".", 1)
        gguf_name = names.get_name(base)
        assert gguf_name, f"no GGUF name for {hf_name}"
        t = t.astype(np.float32)
        if base.endswith("self_attn.q_proj"):
            t = _permute(t, cfg.num_attention_heads)
        elif base.endswith("self_attn.k_proj"):
            t = _permute(t, cfg.num_key_value_heads)
        w.add_tensor(f"{gguf_name}.{suffix}", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_file
