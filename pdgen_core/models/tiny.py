"""``pdgen-tiny``: the project's own default model, made here because nothing can be downloaded.

A Llama-architecture model (the architecture vLLM's CPU backend runs) with head_dim 64 (vLLM's CPU
attention refuses 16) and a byte-level BPE tokenizer trained with the ``tokenizers`` library on
catalog text. ``make_tiny_model`` writes a plain HF folder (config, safetensors, tokenizer), so the
same loading code serves it and any real model. Weights are random until ``pdgen finetune``
trains them (see ``pdgen_core.finetune``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from pdgen_core import synth

TINY_NAME = "pdgen-tiny"
TINY_VERSION = "1"
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"]


def train_tokenizer(texts: list[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on ``texts``, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>",
        unk_token="<|unk|>", model_max_length=2048,
    )


def llama_config(vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 2,
                 max_positions: int = 1024, tokenizer=None):
    from transformers import LlamaConfig

    assert hidden // heads == 64, "vLLM's CPU attention needs head_dim 64 (16 is refused)"
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 4,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id if tokenizer else 1,
        eos_token_id=tokenizer.eos_token_id if tokenizer else 2,
        pad_token_id=tokenizer.pad_token_id if tokenizer else 0,
        torch_dtype="float32",
    )


def make_tiny_model(dest: Path, texts: list[str] | None = None, seed: int = 0, layers: int = 2,
                    hidden: int = 128) -> Path:
    """Write a random-weight tiny Llama + trained tokenizer to ``dest`` (atomically)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tok = train_tokenizer(texts or synth.corpus())
    cfg = llama_config(len(tok), hidden=hidden, layers=layers, heads=hidden // 64, tokenizer=tok)
    model = LlamaForCausalLM(cfg)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "pdgen_card.json").write_text(json.dumps(
        {"name": TINY_NAME, "version": TINY_VERSION, "weights": "random", "seed": seed}, indent=2))
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, dest)
    except OSError:  # made concurrently by another process on this node: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
