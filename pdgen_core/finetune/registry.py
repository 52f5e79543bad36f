"""The adapter registry: ``<output>/adapters/<task>/<version>/``, versions 1, 2, 3...

A version holds a PEFT LoRA folder (``kind: lora``, loaded by vLLM with ``enable_lora``) or a full
HF model folder (``kind: full``, from-scratch runs), plus ``card.json`` (base model, data
fingerprint, metrics, hyperparameters, run id).

Commit protocol: a publisher claims the next number with a create-only write of ``<n>/_CLAIM``
(S3 ``If-None-Match: *``, or ``O_EXCL`` locally), so two publishers never share a version; it then
writes the files, and writes ``<n>/_COMMITTED`` (the manifest: file list with sha256 and the card)
last. Until that marker exists the folder is a staging area that readers ignore, so a version
appears whole or not at all. A claimed folder whose publisher died stays uncommitted and its
number is skipped. Publishing the same run's same checkpoint again returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.log import get_logger
from pdgen_core.models.resolve import _node_lock
from pdgen_core.ray_session import on_every_node
from pdgen_core.settings import get_settings

COMMITTED = "_COMMITTED"
CLAIM = "_CLAIM"
NOT_EXPORTED = {"trainer_state.pt", "pdgen_state.json", "samples.json", "README.md"}


class AdapterNotFound(InputError, LookupError):
    """No committed version matches; the message lists what exists."""


def _task_loc(output_uri: str, task: str) -> storage.Location:
    return storage.resolve(output_uri).child("adapters", task)


def _version_dirs(task_loc: storage.Location) -> list[int]:
    """Every numbered folder under the task, committed or not."""
    sel = pafs.FileSelector(task_loc.path, allow_not_found=True, recursive=False)
    out = []
    for info in task_loc.fs.get_file_info(sel):
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if info.type == pafs.FileType.Directory and name.isdigit():
            out.append(int(name))
    return sorted(out)


def _manifest(task_loc: storage.Location, version: int) -> dict | None:
    loc = task_loc.child(str(version), COMMITTED)
    return storage.read_json(loc) if storage.exists(loc) else None


def committed_versions(output_uri: str, task: str) -> list[int]:
    t = _task_loc(output_uri, task)
    return [v for v in _version_dirs(t) if storage.exists(t.child(str(v), COMMITTED))]


def list_adapters(output_uri: str, task: str | None = None) -> list[dict[str, Any]]:
    """Committed versions (all tasks unless ``task``): task, version, uri, kind, run_id, metrics."""
    root = storage.resolve(output_uri).child("adapters")
    if task is None:
        sel = pafs.FileSelector(root.path, allow_not_found=True, recursive=False)
        tasks = sorted(i.path.rstrip("/").rsplit("/", 1)[-1] for i in root.fs.get_file_info(sel)
                       if i.type == pafs.FileType.Directory)
    else:
        tasks = [task]
    out = []
    for t in tasks:
        tl = _task_loc(output_uri, t)
        for v in _version_dirs(tl):
            m = _manifest(tl, v)
            if m:
                card = m.get("card", {})
                out.append({"task": t, "version": v, "uri": tl.child(str(v)).uri, "kind": m.get("kind"),
                            "run_id": card.get("run_id"), "metrics": card.get("metrics", {}),
                            "committed_at": m.get("committed_at")})
    return out


def _claim(task_loc: storage.Location, version: int) -> bool:
    """Create ``<version>/_CLAIM`` only if absent; True when this caller got the version."""
    loc = task_loc.child(str(version), CLAIM)
    body = json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "at": time.time()}).encode()
    if loc.is_s3:
        from botocore.exceptions import ClientError

        bucket, key = storage.split_s3(loc.uri)
        try:
            storage.boto3_client().put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
    Path(loc.path).parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(loc.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    return True


def _write_marker(loc: storage.Location, obj: Any) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    if loc.is_s3:
        storage.write_bytes(loc, data)  # one PUT: S3 makes it visible whole
        return
    tmp = loc.path + f".tmp{os.getpid()}"
    Path(tmp).write_bytes(data)
    os.replace(tmp, loc.path)


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stage(src: Path, card: dict, kind: str) -> Path:
    """A local copy of what gets published: exported files plus card.json."""
    out = Path(src).with_name(Path(src).name + ".export")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for p in Path(src).iterdir():
        if p.is_file() and p.name not in NOT_EXPORTED:
            shutil.copy2(p, out / p.name)
    if kind == "lora":
        if not (out / "adapter_config.json").is_file():
            raise ValueError(f"{src} holds no adapter_config.json: not a PEFT LoRA checkpoint")
        cfg = json.loads((out / "adapter_config.json").read_text())
        if card.get("base_model"):  # a cache path means nothing elsewhere; name the base instead
            cfg["base_model_name_or_path"] = card["base_model"]["source"]
        (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    elif not (out / "config.json").is_file():
        raise ValueError(f"{src} holds no config.json: not a full HF model checkpoint")
    (out / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    return out


def publish(output_uri: str, task: str, src: Path, card: dict[str, Any], kind: str = "lora") -> tuple[int, str]:
    """Publish ``src`` as the next version of ``task``; returns ``(version, uri)``. Idempotent per
    (run id, checkpoint): re-publishing the same run's same checkpoint returns the existing version."""
    log = get_logger(component="finetune.registry", task=task)
    tl = _task_loc(output_uri, task)
    for v in reversed(_version_dirs(tl)):
        m = _manifest(tl, v)
        c = (m or {}).get("card", {})
        if m and c.get("run_id") == card.get("run_id") and c.get("checkpoint") == card.get("checkpoint") \
                and card.get("checkpoint"):
            log.info("already_published", version=v, run_id=c.get("run_id"))
            return v, tl.child(str(v)).uri
    staged = _stage(src, card, kind)
    try:
        version = (max(_version_dirs(tl), default=0)) + 1
        while not _claim(tl, version):
            version += 1
        vloc = tl.child(str(version))
        card = {**card, "version": version}
        (staged / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        storage.upload_dir(staged, vloc)
        files = {p.name: _sha256(p) for p in sorted(staged.iterdir())}
        _write_marker(vloc.child(COMMITTED), {
            "version": version, "task": task, "kind": kind, "files": files, "card": card,
            "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return version, vloc.uri


def _pick(versions: list[int], ref: str | int, where: str) -> int:
    if not versions:
        raise AdapterNotFound(f"no committed adapter under {where}; run `pdgen finetune SPEC` first")
    if str(ref) == "latest":
        return versions[-1]
    if not str(ref).isdigit() or int(ref) not in versions:
        raise AdapterNotFound(f"adapter version {ref!r} not found under {where}; committed: {versions} "
                              "(use one of them or 'latest')")
    return int(ref)


def _check_kind(found: str | None, want: str | None, uri: str) -> None:
    if want and found and found != want:
        raise AdapterNotFound(
            f"{uri} is a {found} model, not a {want} adapter: use it as the base model "
            f"(`model.source: {uri}`), or name a LoRA version under `model.adapters`")


def resolve_adapter(output_uri: str, task: str, ref: str | int = "latest",
                    kind: str | None = None) -> tuple[Path, int]:
    """A local folder holding ``task``'s adapter ``ref`` (``latest`` or a version number), and its
    version. S3 versions are downloaded once per node into the cache (keyed by the manifest's file
    hashes) and checked against the manifest; local ones are used in place. ``kind`` (``lora``)
    refuses a version of another kind with a message that says how to use it."""

    tl = _task_loc(output_uri, task)
    version = _pick(committed_versions(output_uri, task), ref, tl.uri)
    vloc = tl.child(str(version))
    manifest = _manifest(tl, version)
    _check_kind((manifest or {}).get("kind"), kind, vloc.uri)
    if not vloc.is_s3:
        return Path(vloc.path), version
    # Keyed by content, not URI: a registry can be recreated under the same URI (a new bucket,
    # a test's in-memory S3), and a stale copy must never be served for a different adapter.
    key = hashlib.sha256(json.dumps([vloc.uri, manifest["files"]], sort_keys=True).encode()).hexdigest()[:16]
    dest = get_settings().cache_dir / "adapters" / f"{task}-v{version}-{key}"
    with _node_lock(dest):
        if not (dest / "card.json").is_file():
            storage.download_prefix(vloc, dest)
            bad = [n for n, h in manifest["files"].items() if not (dest / n).is_file() or _sha256(dest / n) != h]
            if bad:
                shutil.rmtree(dest, ignore_errors=True)
                raise RuntimeError(f"adapter {vloc.uri}: downloaded files {bad} do not match the manifest")
    return dest, version


def resolve_adapter_uri(uri: str, kind: str | None = None) -> tuple[Path, int]:
    """The same for a version URI such as ``s3://content/adapters/description/3``."""
    head, _, ver = uri.rstrip("/").rpartition("/")
    root, _, task = head.rpartition("/")
    if not ver.isdigit() or not root.endswith("/adapters"):
        raise AdapterNotFound(f"{uri!r} is not an adapter version URI like <output>/adapters/<task>/<n>")
    return resolve_adapter(root[: -len("/adapters")], task, ver, kind=kind)


def read_card(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "card.json").read_text())


@dataclass(frozen=True)
class RunAdapters:
    """A generation run's adapters: per task the identity (lineage and fingerprints) and the local
    folder on every node, and the tasks whose card says ``prompt.few_shot: false``."""

    identities: dict[str, str]
    paths: dict[str, str]
    zero_shot: frozenset[str]


def adapters_for_run(output_uri: str, refs: dict[str, str]) -> RunAdapters:
    """Resolve ``model.adapters`` (task -> ref) on every node. ``latest`` or a version number refer
    to ``<output>/adapters/<task>/``; a full URI (``s3://.../adapters/<task>/<n>``) to another
    registry. vLLM loads each through a LoRA request per row (the ``model`` column of
    ray.data.llm)."""
    identities, paths, zero_shot = {}, {}, set()
    for task, ref in refs.items():
        if "://" in ref or ref.startswith("/"):
            resolve = partial(resolve_adapter_uri, ref, kind="lora")
        else:
            resolve = partial(resolve_adapter, output_uri, task, ref, kind="lora")
        path, version = on_every_node(resolve)
        identities[task] = f"{task}/v{version}@{Path(path).name}"
        paths[task] = str(path)
        if (read_card(Path(path)).get("prompt") or {}).get("few_shot") is False:
            zero_shot.add(task)
    return RunAdapters(identities, paths, frozenset(zero_shot))
