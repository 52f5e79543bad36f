"""Submit pdgen jobs to a Ray cluster through the Ray Jobs API, and follow them.

The job runs ``python ray_jobs/<entrypoint>.py <spec> [args]`` on the cluster, with this source tree
shipped as the runtime env's ``working_dir`` and pyproject's dependencies as its ``pip`` list
(``pip=False`` for a cluster that already has them, e.g. a local head started from the venv with
that venv's bin/ first on PATH, so that the job's ``python`` is the venv's).
Environment facts (S3 endpoint, credentials) come from the cluster's environment, never from here.
A cluster with Ray's token auth (the default for a local cluster once ``~/.ray/auth_token`` exists)
needs ``RAY_AUTH_MODE=token`` and the token (``RAY_AUTH_TOKEN`` or that file) on the submitting side.

    pdgen submit spec.yaml --address http://127.0.0.1:8265 [--entrypoint refresh] [--wait] [--no-pip]
        [--set a.b=c ...] [--changes s3://feeds/prices.parquet] [--resume RUN_ID]
    pdgen status JOB | pdgen logs JOB [--follow] | pdgen stop JOB | pdgen jobs
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator, Mapping, Sequence

# Never shipped: the venv, caches, git metadata, test screenshots. (.gitignore also applies.)
EXCLUDES = [".venv", ".cache", ".git", "__pycache__", "*.pyc", ".pytest_cache", "tests/artifacts"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_SPEC_DIR = "_pdgen_spec"


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    status: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    message: str
    entrypoint: str
    start_time: float | None  # seconds since the epoch
    end_time: float | None


def _client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    # Ray's own order: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS (which ray.init also reads).
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ValueError("no Ray address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    return JobSubmissionClient(address)


def _info(d) -> JobInfo:
    ms = lambda v: v / 1000 if v else None  # noqa: E731 (Ray reports milliseconds)
    return JobInfo(
        job_id=d.submission_id or d.job_id,
        status=str(getattr(d.status, "value", d.status)),
        message=d.message or "",
        entrypoint=d.entrypoint,
        start_time=ms(d.start_time),
        end_time=ms(d.end_time),
    )


def source_root() -> Path:
    """The pdgen source tree (the folder holding pyproject.toml and ray_jobs/)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"{root} is not a pdgen source tree (no pyproject.toml); pass working_dir explicitly"
        )
    return root


def pip_requirements(root: Path, extras: Sequence[str] = ()) -> list[str]:
    """pyproject's dependencies (plus the named extras), without Ray itself.

    Ray is left out because the cluster provides it: a pip runtime env that reinstalls Ray would
    replace the version the head and workers run.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        optional = project.get("optional-dependencies", {})
        if extra not in optional:
            raise ValueError(f"no extra {extra!r} in pyproject.toml; known: {sorted(optional)}")
        reqs += optional[extra]
    return [r for r in reqs if re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() != "ray"]


def _digest(p: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(x for x in [p, *p.rglob("*")] if x.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]


def _stage(root: Path, *paths: Path) -> tuple[Path, list[str]]:
    """A working dir holding ``paths`` (the spec, a local changes feed): ``root`` itself when they
    all lie inside it, otherwise a temporary folder of symlinks to root's entries plus a copy of
    each outside one (Ray's packager follows symlinks, so the job sees one tree). Returns
    (working_dir, each path relative to it)."""
    paths = tuple(p.resolve() for p in paths)
    if all(p.is_relative_to(root) for p in paths):
        return root, [p.relative_to(root).as_posix() for p in paths]
    stage = Path(tempfile.mkdtemp(prefix="pdgen-submit-"))
    for entry in root.iterdir():
        if entry.name not in EXCLUDES:
            (stage / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (stage / _SPEC_DIR).mkdir()
    rels = []
    for p in paths:
        rel = f"{_SPEC_DIR}/{_digest(p)}-{p.name}"
        (shutil.copytree if p.is_dir() else shutil.copyfile)(p, stage / rel)
        rels.append(rel)
    return stage, rels


# The options of the command each entry point runs (ray_jobs/<name>.py is `pdgen <command>`):
# `pdgen submit` forwards these, and refuses one the command does not take.
FORWARDED = {"generate": ("--set", "--resume"), "refresh": ("--set", "--changes", "--resume"),
             "finetune": ("--set",)}


def job_args(entrypoint: str, *, sets: Sequence[str] = (), changes: str | None = None,
             resume: str | None = None) -> list[str]:
    """The forwarded options as the entry point's arguments, in its own syntax: ``--set`` once
    per override, ``--changes URI``, ``--resume RUN_ID``. ``ValueError`` for an option the entry
    point's command lacks (``--changes`` is a refresh's), naming the one that has it."""
    given = {"--set": list(sets), "--changes": changes, "--resume": resume}
    allowed = FORWARDED.get(entrypoint, ())
    for opt, value in given.items():
        if value and opt not in allowed:
            takes = sorted(e for e, opts in FORWARDED.items() if opt in opts)
            raise ValueError(f"{opt} is not an option of the {entrypoint!r} entry point; it is one of "
                             f"{takes} (--entrypoint {takes[0]})")
    args: list[str] = []
    for pair in sets:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set sampling.max_tokens=64")
        args += ["--set", pair]
    if changes:
        args += ["--changes", changes]
    if resume:
        args += ["--resume", resume]
    return args


def entrypoint_command(entrypoint: str, spec_rel: str, args: Sequence[str] = ()) -> str:
    """The job's shell command: ``python ray_jobs/<entrypoint>.py <spec> [args]``, quoted."""
    return shlex.join(["python", f"ray_jobs/{entrypoint}.py", spec_rel, *args])


def _local_feed(changes: str | None) -> Path | None:
    """A ``--changes`` feed on this machine's disk, which the cluster cannot read: it travels in
    the working dir beside the spec. An ``s3://`` feed is read by the job itself."""
    if not changes or "://" in changes:
        return None
    p = Path(changes).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"changes feed {changes} does not exist here; pass a local Parquet "
                                "file or folder (it is shipped with the job) or an s3:// URI")
    return p


def runtime_env(
    working_dir: Path, *, pip: bool = True, extras: Sequence[str] = (), env_vars: Mapping[str, str] | None = None
) -> dict:
    env: dict = {"working_dir": str(working_dir), "excludes": list(EXCLUDES)}
    if pip:
        env["pip"] = {"packages": pip_requirements(working_dir, extras), "pip_check": False}
    if env_vars:
        env["env_vars"] = dict(env_vars)
    return env


def submit(
    spec_path: str | os.PathLike,
    address: str | None,
    entrypoint: str = "generate",
    extra_args: Sequence[str] = (),
    wait: bool = False,
    *,
    sets: Sequence[str] = (),
    changes: str | None = None,
    resume: str | None = None,
    pip: bool = True,
    extras: Sequence[str] = (),
    env_vars: Mapping[str, str] | None = None,
    working_dir: str | os.PathLike | None = None,
    timeout_s: float | None = None,
) -> str:
    """Submit ``python ray_jobs/<entrypoint>.py <spec> [forwarded options] [extra_args]``; return
    the job id. ``sets``, ``changes`` and ``resume`` become the entry point's ``--set``,
    ``--changes`` and ``--resume`` (``job_args``); a local ``changes`` feed is shipped with the job.

    ``wait=True`` blocks until the job ends (or ``timeout_s`` passes) and raises ``RuntimeError``
    when it did not succeed. ``env_vars`` are visible in the dashboard: never pass credentials.
    """
    spec = Path(spec_path)
    if not spec.is_file():
        raise FileNotFoundError(f"spec {spec} does not exist")
    root = Path(working_dir).resolve() if working_dir else source_root()
    script = root / "ray_jobs" / f"{entrypoint}.py"
    if not script.is_file():
        known = sorted(p.stem for p in (root / "ray_jobs").glob("*.py") if not p.stem.startswith("_"))
        raise ValueError(f"no entry point {script}; choose one of {known}")
    forwarded = job_args(entrypoint, sets=sets, changes=changes, resume=resume)
    feed = _local_feed(changes)
    stage, rels = _stage(root, spec, *([feed] if feed else []))
    try:
        if feed:  # the shipped copy, relative to the job's working dir
            forwarded[forwarded.index("--changes") + 1] = rels[1]
        cmd = entrypoint_command(entrypoint, rels[0], [*forwarded, *extra_args])
        client = _client(address)
        job_id = _submit_when_agent_ready(
            client,
            entrypoint=cmd,
            submission_id=f"pdgen-{entrypoint}-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}",
            runtime_env=runtime_env(stage, pip=pip, extras=extras, env_vars=env_vars),
            metadata={"pdgen_entrypoint": entrypoint, "pdgen_spec": spec.name},
        )
    finally:
        if stage != root:  # the package is uploaded by now
            shutil.rmtree(stage, ignore_errors=True)
    if wait:
        final = wait_for(job_id, address, timeout_s=timeout_s)
        if final.status != "SUCCEEDED":
            raise RuntimeError(f"job {job_id} ended {final.status}: {final.message}")
    return job_id


# A head that has just started (a KubeRay pod restarted, a test's head) answers the Jobs API
# before its node's agent has registered: HTTP 500 "No available agent to submit job, please try
# again later". That is worth waiting for; every other error is not.
AGENT_WAIT_S = 90.0


def _submit_when_agent_ready(client, wait_s: float = AGENT_WAIT_S, **kw) -> str:
    """``client.submit_job(**kw)``, repeated while the head says no agent is available yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return client.submit_job(**kw)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def status(job_id: str, address: str | None) -> JobInfo:
    return _info(_client(address).get_job_info(job_id))


def wait_for(job_id: str, address: str | None, timeout_s: float | None = None, poll_s: float = 1.0) -> JobInfo:
    """Poll until the job reaches a terminal state; ``TimeoutError`` after ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = status(job_id, address)
        if info.status in TERMINAL:
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {info.status} after {timeout_s}s")
        time.sleep(poll_s)


def logs(job_id: str, address: str | None, follow: bool = False) -> Iterator[str]:
    """The job's log: once as a whole, or (``follow``) in chunks until the job ends."""
    client = _client(address)
    if not follow:
        yield client.get_job_logs(job_id)
        return
    # tail_job_logs is an async iterator over a websocket; drive it from this sync generator.
    loop = asyncio.new_event_loop()
    stream = client.tail_job_logs(job_id)
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(stream.aclose())
        loop.close()


def stop(job_id: str, address: str | None) -> bool:
    """Ask the job to stop; False when it had already ended."""
    return _client(address).stop_job(job_id)


def list_jobs(address: str | None) -> list[JobInfo]:
    return sorted((_info(d) for d in _client(address).list_jobs()), key=lambda j: j.start_time or 0)


# --- command line -------------------------------------------------------------------------------


class Entrypoint(str, Enum):
    generate = "generate"
    refresh = "refresh"
    finetune = "finetune"
