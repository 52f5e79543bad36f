"""What a model folder says about prompting it: whether it has a chat template (and its text, for
fingerprints), the prompt a list of messages becomes, and how to read what a reasoning model says.

The chat template is applied here, with the model's own tokenizer (loaded once per worker
process), in the engine actor as it builds each request (``stages/prompt.py``): 4,400 prompts/s
on one core, so no pool of actors of its own (ray.data.llm's chat-template stage would be one
more, competing with the engine for the same cores). The engine tokenizes the rendered prompt.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

# A reasoning model's thoughts: never part of the published text.
_THINK = re.compile(r"<think>.*?(</think>|\Z)", re.DOTALL)


def chat_template(path: Path) -> str:
    """The model's chat template text, or ``""`` when it has none (``chat_template.jinja``, as
    transformers 5 saves it, or the ``chat_template`` key of ``tokenizer_config.json``)."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        tpl = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template") or ""
        return tpl if isinstance(tpl, str) else json.dumps(tpl, sort_keys=True)
    return ""


def prompt_format(requested: str, path: Path) -> str:
    """``chat`` or ``completion`` for ``model.prompt_format`` on this model; ``auto`` means chat
    when the tokenizer has a chat template. Asking chat of a model without one is refused."""
    has_chat = bool(chat_template(path))
    if requested == "auto":
        return "chat" if has_chat else "completion"
    if requested == "chat" and not has_chat:
        raise ValueError(
            f"model.prompt_format is 'chat' but {path} has no chat template (no chat_template.jinja "
            "and no chat_template in tokenizer_config.json); use prompt_format: completion or auto")
    return requested


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def render(path: str, messages: list[dict[str, str]]) -> str:
    """The prompt text for ``messages`` through the model's chat template, ending with the
    assistant's turn. Thinking is off (``enable_thinking=False``; templates without the switch
    ignore it)."""
    return _tokenizer(path).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)


def strip_thinking(text: str) -> str:
    """``text`` without any ``<think>...</think>`` (an unclosed one runs to the end)."""
    return _THINK.sub("", text) if "<think>" in text else text


def eos_token_ids(path: Path) -> tuple[int, ...]:
    """The tokens that end a turn (the generation config's ``eos_token_id``, one or a list), by
    which a text that stopped by itself is told from one cut at ``max_tokens``."""
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        f = path / name
        if f.is_file():
            v = json.loads(f.read_text()).get("eos_token_id")
            ids += v if isinstance(v, list) else [v] if isinstance(v, int) else []
    return tuple(dict.fromkeys(ids))
