"""The engine actor's bookkeeping (``stages/generate.EngineActor``) with a fake engine in place of
vLLM: a rejected text goes back into the same engine with its next attempt and the reason; every
attempt comes out, the retry rows beside the item's final one; a request the engine refuses is an
``engine_error`` reject; the output ids vLLM adds a suffix to are matched back. The real engine
runs in the end-to-end tests."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pyarrow as pa
import pytest

from pdgen_core.context_from_spec import build_context
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages.generate import EngineActor
from pdgen_core.stages.guard import GEN_SCHEMA
from pdgen_core.stages.plan import WORK_SCHEMA, work_items
from pdgen_core.stages.validate import clean_row

GOOD = "Acme's red cotton tee is a slim-fit everyday essential for men."
ROW = {"sku": "A-1", "title": "Acme Red Cotton Tee", "brand": "Acme", "price": 12.5,
       "category": "T-shirts", "color": "red", "material": "cotton", "gender": "Men"}


class FakeEngine:
    """``LLM.enqueue`` + ``llm_engine.step`` as vLLM answers them: ids with a random suffix on the
    way in, the caller's id on the outputs; one step finishes every queued request. ``texts``
    maps the number of times a prompt was seen to the text written for it."""

    def __init__(self, texts: dict[int, str], refuse: str | None = None):
        self.texts, self.refuse = texts, refuse
        self.ids, self.queue, self.seen, self.params = itertools.count(), [], {}, []
        self.llm_engine = self
        self.shut_down = 0
        self.engine_core = SimpleNamespace(shutdown=self._shutdown)

    def _shutdown(self):
        self.shut_down += 1

    def enqueue(self, prompts, params, lora_request=None, use_tqdm=False):
        (prompt,), (sp,) = prompts, params
        if self.refuse and self.refuse in prompt:
            raise ValueError("The decoder prompt (length 900) is longer than the maximum model length of 512.")
        rid = str(next(self.ids))
        self.seen[prompt] = self.seen.get(prompt, 0) + 1
        self.queue.append((rid, self.texts[self.seen[prompt]], sp))
        self.params.append(sp)
        return [f"{rid}-a1b2c3d4"]

    def has_unfinished_requests(self):
        return bool(self.queue)

    def step(self):
        done, self.queue = self.queue, []
        return [SimpleNamespace(request_id=rid, finished=True, prompt_token_ids=[1] * 40,
                                outputs=[SimpleNamespace(text=text, finish_reason="stop", token_ids=[2] * 12)])
                for rid, text, _ in done]


def actor(engine: FakeEngine, max_attempts: int = 2) -> EngineActor:
    spec = spec_from_dict({"name": "x", "catalog": {"uri": "s3://b/c/"}, "tasks": ["description"],
                           "output": {"uri": "s3://b/o/"}, "guardrails": {"max_attempts": max_attempts},
                           "model": {"source": "pdgen-tiny"}})
    a = object.__new__(EngineActor)  # the engine is the fake: no vLLM here
    a.ctx = build_context(spec, "run-1", "fake@1", frozenset({"acme"}))
    a.llm, a.adapter_paths, a.loras, a.tally = engine, {}, {}, None
    a.log = SimpleNamespace(info=lambda *a, **k: None)
    return a


def items(a: EngineActor, *rows: dict) -> pa.Table:
    out = [i for r in rows for i in work_items(clean_row(r), a.ctx)]
    return pa.Table.from_pylist(out, schema=WORK_SCHEMA)


def test_a_rejected_text_goes_back_into_the_same_engine_with_its_reason():
    engine = FakeEngine({1: "", 2: GOOD})
    a = actor(engine)
    out = a(items(a, ROW))
    assert out.schema.equals(GEN_SCHEMA)
    first, final = out.to_pylist()
    assert (first["status"], first["attempts"]) == ("retry", 1) and first["reason"]
    assert (final["status"], final["attempts"], final["text"]) == ("accepted", 2, GOOD)
    assert final["retry_reason"] == first["reason"]
    assert engine.params[0].seed != engine.params[1].seed  # the retry is a new draw


def test_the_last_attempt_rejects_and_every_attempt_is_kept():
    a = actor(FakeEngine({1: "", 2: "", 3: ""}), max_attempts=3)
    rows = a(items(a, ROW)).to_pylist()
    assert [r["status"] for r in rows] == ["retry", "retry", "rejected"]
    assert [r["attempts"] for r in rows] == [1, 2, 3] and rows[-1]["stage"] == "guard"


def test_a_request_the_engine_refuses_is_an_engine_error_reject_and_the_rest_goes_on():
    long = {**ROW, "sku": "A-2", "title": "Zq1x7 Zq2x7 Tee"}
    a = actor(FakeEngine({1: GOOD}, refuse="Zq1x7"))
    rows = {r["sku"]: r for r in a(items(a, ROW, long)).to_pylist()}
    assert rows["A-1"]["status"] == "accepted"
    err = rows["A-2"]
    assert (err["status"], err["stage"], err["reason"]) == ("rejected", "generate", "engine_error")
    assert "longer than the maximum model length" in err["detail"]


def test_an_input_without_the_work_columns_is_a_named_stage_error():
    from pdgen_core.errors import StageError

    a = actor(FakeEngine({1: GOOD}))
    with pytest.raises(StageError, match="stage generate: its input lacks column"):
        a(pa.table({"sku": ["A-1"]}))


def test_the_actor_logs_one_summary_per_call():
    events = []
    a = actor(FakeEngine({1: "", 2: GOOD}))
    a.log = SimpleNamespace(info=lambda event, **kw: events.append((event, kw)))
    a(items(a, ROW))
    (event, kw), = events
    assert event == "generate.batch" and (kw["items"], kw["accepted"], kw["retried"], kw["rejected"]) == (1, 1, 1, 0)
    assert json.dumps(kw)  # plain values, for the JSON log


class FakeTally:
    """A ``generate.Tally`` handle: ``add.remote(n)`` recorded."""

    def __init__(self):
        self.calls: list[int] = []
        self.add = SimpleNamespace(remote=self.calls.append)


def test_the_actor_tells_the_tally_each_finished_item_not_each_attempt():
    a = actor(FakeEngine({1: "", 2: GOOD, 3: GOOD}))
    a.tally = FakeTally()
    out = a(items(a, ROW, {**ROW, "sku": "A-2"}))
    assert [r["status"] for r in out.to_pylist()].count("retry") == 1
    assert sum(a.tally.calls) == 2      # two items, three attempts: the bar counts items


def test_told_sends_at_most_once_a_second_and_survives_a_dead_tally():
    from pdgen_core.stages.generate import Told

    now = [0.0]
    tally = FakeTally()
    told = Told(tally, every_s=1.0, clock=lambda: now[0])
    for _ in range(5):
        told.done(1)                    # within the same second: held
    assert tally.calls == []
    now[0] = 1.5
    told.done(1)
    assert tally.calls == [6]
    told.done(2)
    told.flush()
    assert tally.calls == [6, 2]

    def dead(_n):
        raise RuntimeError("actor died")
    told = Told(SimpleNamespace(add=SimpleNamespace(remote=dead)), clock=lambda: now[0])
    told.done(1)
    told.flush()                        # no raise: the bar falls back on the staged files
    assert told.tally is None


def test_the_engine_core_stops_when_the_actor_goes():
    engine = FakeEngine({1: GOOD})
    a = actor(engine)
    a(items(a, ROW))
    del a
    assert engine.shut_down == 1


def test_a_resume_keeps_only_items_staged_with_their_final_row(ray_local, tmp_path):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from pdgen_core import incremental

    key = {"locale": "en", "variant": "", "input_fingerprint": "f1"}
    rows = [{"sku": "A", **key, "status": "retry"}, {"sku": "A", **key, "status": "accepted"},
            {"sku": "B", **key, "status": "retry"}, {"sku": "C", **key, "status": "rejected"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-0.parquet")
    keys = incremental.staged_keys([str(tmp_path / "part-0.parquet")], pafs.LocalFileSystem()).take_all()
    assert sorted(k["sku"] for k in keys) == ["A", "C"]  # B's final row was never staged: again


def test_an_engine_loads_a_fetched_model_from_its_own_nodes_cache(tmp_path, monkeypatch):
    """A registered, ``s3://`` or ``.gguf`` model is read from the cache of the node the engine runs
    on (each node's PDGEN_CACHE_DIR, filled before the job starts), never from the driver's folder,
    which is another node's; a local folder is the spec's own path on every node."""
    from pdgen_core.models import resolve
    from pdgen_core.stages.generate import node_model_path

    here = tmp_path / "node-cache" / "models" / "pdgen-tiny-v1"
    asked = []
    monkeypatch.setattr(resolve, "resolve_model", lambda s: asked.append(s) or here)
    assert node_model_path("pdgen-tiny", "/driver/cache/models/pdgen-tiny-v1") == str(here)
    assert node_model_path("s3://models/tiny/", "/driver/cache/models/s3-1") == str(here)
    assert node_model_path("/data/smollm2.Q4_1.gguf", "/driver/cache/models/gguf-1") == str(here)
    assert asked == ["pdgen-tiny", "s3://models/tiny/", "/data/smollm2.Q4_1.gguf"]
    assert node_model_path("/models/my-llama", "/models/my-llama") == "/models/my-llama"
    assert node_model_path(None, "/models/x") == "/models/x"
    assert len(asked) == 3


def test_a_service_replica_loads_a_fetched_model_from_its_own_nodes_cache(tmp_path, monkeypatch):
    """The generation service's replicas resolve the model as a job's engine actors do: a
    registered name from the replica's node cache, not the folder of the driver that deployed it."""
    import sys
    import types

    from pdgen_core import service
    from pdgen_core.models import resolve

    here = tmp_path / "node-cache" / "models" / "pdgen-tiny-v1"
    monkeypatch.setattr(resolve, "resolve_model", lambda s: here)
    loaded = []
    fake = types.ModuleType("vllm")
    fake.LLM = lambda model, **kw: loaded.append((model, kw)) or object()
    monkeypatch.setitem(sys.modules, "vllm", fake)  # the call's arguments, not an engine
    service.EngineService("/driver/cache/models/pdgen-tiny-v1", {"max_model_len": 64}, {}, "pdgen-tiny")
    service.EngineService("/models/my-llama", {}, {}, "/models/my-llama")
    assert loaded == [(str(here), {"max_model_len": 64}), ("/models/my-llama", {})]
