"""Fine-tuning: spec, data (split, dedup, masking), metrics, registry, and real runs.

The e2e tests train a LoRA adapter for a few steps on the CPU through Ray Train (2 workers, DDP
over gloo) with checkpoints on the local S3 endpoint, resume the run from its checkpoint, publish
it to the registry and load it in the real vLLM CPU engine through a LoRARequest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pdgen_core.finetune import data as D
from pdgen_core.finetune import metrics as M
from pdgen_core.finetune import registry
from pdgen_core.finetune.config import load_finetune_spec, spec_from_dict
from pdgen_core.spec import SpecError

CONFIGS = Path(__file__).resolve().parents[1] / "pdgen_core" / "configs"


def _spec(**over) -> dict:
    base = {"name": "t", "data": {"uri": "synth://100"}, "storage_path": "/tmp/x", "output": {"uri": "/tmp/y"}}
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


# ---------------------------------------------------------------- spec

@pytest.mark.parametrize("path", sorted(CONFIGS.glob("finetune-*.yaml")), ids=lambda p: p.name)
def test_shipped_finetune_yamls_load(path):
    spec = load_finetune_spec(path)
    assert spec.kind in ("lora", "full")
    assert "pdgen finetune" in path.read_text().split("\nname:")[0]  # launch command in the header


def test_spec_defaults_lora_and_rejects_lora_with_from_scratch():
    assert spec_from_dict(_spec()).lora.rank == 16
    assert spec_from_dict(_spec(model={"from_scratch": True})).lora is None
    with pytest.raises(SpecError) as e:
        spec_from_dict(_spec(model={"from_scratch": True}, lora={"rank": 8}))
    assert "from_scratch" in str(e.value) and "remove the `lora:` section" in str(e.value)


def test_spec_errors_name_field_value_and_fix():
    with pytest.raises(SpecError) as e:
        spec_from_dict(_spec(optim={"lrr": 1}, model={"tiny": {"hidden": 100}},
                             train={"early_stopping": {"metric": "accuracy"}}))
    msg = str(e.value)
    assert "optim.lrr" in msg and "remove `lrr`" in msg
    assert "model.tiny.hidden" in msg and "head_dim 64" in msg
    assert "train.early_stopping.metric" in msg and "'accuracy'" in msg


def test_currency_is_an_iso_4217_code_as_in_the_job_spec():
    assert spec_from_dict(_spec(data={"uri": "synth://10", "currency": "inr"})).data.currency == "INR"
    with pytest.raises(SpecError, match=r"data.currency.*'XYZ' is not an ISO 4217 currency code"):
        spec_from_dict(_spec(data={"uri": "synth://10", "currency": "XYZ"}))


def test_spec_overrides_and_missing_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(json.dumps(_spec()))
    assert load_finetune_spec(p, ["train.max_steps=7"]).train.max_steps == 7
    with pytest.raises(SpecError, match="does not exist"):
        load_finetune_spec(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- data

ROWS = [
    {"sku": "1", "title": "Acme Men Blue Shirt", "brand": "Acme", "price": 10.0,
     "description": "Blue shirt, has a spread collar and long sleeves"},
    {"sku": "2", "title": "Acme Men Blue Shirt XL", "brand": "Acme", "price": 12.0,   # same text, other id
     "description": "Blue  shirt, has a spread collar and long sleeves."},
    {"sku": "3", "title": "Acme Men Blue Shirt", "brand": "Acme", "price": 11.0,      # same title
     "description": "A blue shirt with a spread collar, long sleeves and a pocket"},
    {"sku": "4", "title": "Tiny", "description": "Too short"},
    {"sku": "5", "title": None, "description": "No title here but a long enough description text"},
]


def test_pairs_use_the_generation_prompt_and_count_drops():
    from pdgen_core.tasks import TASKS

    pairs, dropped = D.build_pairs(ROWS, currency="USD", min_chars=20)
    assert [p.sku for p in pairs] == ["1", "3"]
    assert dropped == {"duplicate_text": 1, "too_short": 1, "no_title_or_description": 1}
    assert pairs[0].prompt == TASKS["description"].render(ROWS[0], "en", "USD")
    assert pairs[0].prompt.endswith("### Description\n")


def test_split_keeps_near_duplicates_together_and_is_stable():
    from pdgen_core.synth import make_catalog

    rows = D.rows_from_table(make_catalog(600, seed=3), {**D.SYNTH_COLUMNS})
    pairs, _ = D.build_pairs(rows, min_chars=20)
    a = D.split_pairs(pairs, 0.2, 0.1)
    b = D.split_pairs(list(reversed(pairs)), 0.2, 0.1)
    assert {k: {p.sku for p in v} for k, v in a.items()} == {k: {p.sku for p in v} for k, v in b.items()}
    side = {p.sku: k for k, v in a.items() for p in v}
    by_title: dict[str, set] = {}
    for p in pairs:
        by_title.setdefault(D.normalise(p.title), set()).add(side[p.sku])
    assert all(len(s) == 1 for s in by_title.values())  # a title never straddles the split
    assert 0.1 < len(a["val"]) / len(pairs) < 0.3 and a["test"]


def test_split_groups_chain_through_titles_and_texts():
    ps = [D.Pair("a", "p", "text one here", "T1"), D.Pair("b", "p", "text two here", "T1"),
          D.Pair("c", "p", "Text two, here!", "T2"), D.Pair("d", "p", "unrelated", "T3")]
    g = D._groups(ps)
    assert g[0] == g[1] == g[2] != g[3]


def test_loss_is_masked_to_the_answer_plus_eos():
    from pdgen_core.models.tiny import train_tokenizer

    tok = train_tokenizer(["Title: shirt", "Blue shirt with a collar"], vocab_size=300)
    ids, labels = D.encode_pair(tok, "### Product\nTitle: \"x\"\n### Description\n", "Blue shirt", 128)
    n_prompt = len(tok("### Product\nTitle: \"x\"\n### Description\n")["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:-1]) == "Blue shirt"
    assert D.encode_pair(tok, "x" * 50, "y" * 50, 16) is None
    batch = D.collate([(ids, labels), ([5, 6], [-100, 6])], tok.pad_token_id)
    assert batch["labels"][1, 2:].eq(-100).all() and batch["attention_mask"][1].tolist()[:3] == [1, 1, 0]


GLUED = [
    {"sku": "g1", "title": "Safari Black Trolley Bag", "brand": "Safari",
     "description": "Black trolley bag, secured with a TSA lockOne handle on the top, one handle on "
                    "the side. Warranty: 5 yearsWarranty provided by brand"},
    {"sku": "g2", "title": "Manyavar Men Blue Bandhgala Suit", "brand": "Manyavar",
     "description": "Blue self-design bandhgala suitBlue self-design blazer, has a mandarin collar"},
    {"sku": "g3", "title": "Aurelia Women Kurta", "brand": "Aurelia",
     "description": "Green kurta, has a round neck, a zarqonFlimbo hem and one lock with years of use"},
    {"sku": "g4", "title": "Apple iPhone Cover", "brand": "Apple",
     "description": "A clear iPhone cover with a raised lip. A blue suit lock, warranty for years"},
]


def test_repair_glued_splits_word_joins_and_drops_the_rest():
    vocab = D.vocabulary(GLUED)
    assert {"lock", "one", "suit", "blue", "years", "warranty"} <= vocab and "lockone" not in vocab
    text, joins, left = D.repair_glued(GLUED[0]["description"], vocab)
    assert "TSA lock. One handle" in text and "5 years. Warranty provided" in text and joins == 2 and not left
    assert D.repair_glued("Black.Blue, e.g.Cotton", vocab)[0] == "Black. Blue, e.g.Cotton"
    assert D.repair_glued("a zarqonFlimbo hem", vocab) == ("a zarqonFlimbo hem", 0, ["zarqonFlimbo"])

    pairs, counts = D.build_pairs(GLUED, currency="INR", min_chars=20, repair=True)
    assert [p.sku for p in pairs] == ["g1", "g2", "g4"]           # a name from the title stays glued
    assert counts == {"glued_words": 1, "repaired_pairs": 2, "repaired_joins": 3}
    assert pairs[1].target.startswith("Blue self-design bandhgala suit. Blue self-design blazer")
    assert pairs[1].source == GLUED[1]["description"]              # the split key: the catalog's text
    plain, _ = D.build_pairs(GLUED, currency="INR", min_chars=20)
    assert D._groups(pairs) == D._groups([p for p in plain if p.sku != "g3"])  # repair moves nothing


def test_name_brand_after_the_first_clause():
    assert D.name_brand("Blue checked casual shirt, has a spread collar", "Parx") == \
        "Blue checked casual shirt from Parx, has a spread collar"
    assert D.name_brand("Pink, blue and white printed kurta. Straight hem", "Anouk") == \
        "Pink, blue and white printed kurta from Anouk. Straight hem"
    assert D.name_brand("A Parx shirt in blue", "parx") == "A Parx shirt in blue"   # named already
    assert D.name_brand("Short one", "X") == "Short one" and D.name_brand("Any text", None) == "Any text"


def test_end_sentence_closes_a_comma_list():
    assert D.end_sentence("Brown printed shirt, has a spread collar, one patch pocket") == \
        "Brown printed shirt, has a spread collar, one patch pocket."
    assert D.end_sentence("Blue kurta, straight hem, ") == "Blue kurta, straight hem."
    assert D.end_sentence("Grey jeans - ") == "Grey jeans."
    assert D.end_sentence("A fine bag. ") == "A fine bag."
    assert D.end_sentence("Is it warm?") == "Is it warm?"
    assert D.end_sentence("很好。") == "很好。"


def test_ground_details_cuts_what_the_facts_do_not_give():
    shirt = {"title": "HIGHLANDER Men Navy Blue & Maroon Slim Fit Checked Casual Shirt"}
    assert D.ground_details("Navy Blue and maroon checked casual shirt, has a spread collar, long sleeves, "
                            "button placket, curved hem, one patch pocket", shirt) == \
        ("Navy Blue and maroon checked casual shirt", 5)
    tee = {"title": "HRX Men Grey Round Neck T-shirt"}          # the title gives the neck, not the sleeves
    assert D.ground_details("Grey melange solid T-shirt, has a round neck, short sleeves", tee) == \
        ("Grey melange solid T-shirt, has a round neck", 1)
    kurta = {"title": "Anouk Women Pink Kurta with Trousers"}   # sentences stay sentences
    assert D.ground_details("Pink kurta with trousers. Pink kurta, has a mandarin collar, long sleeves, "
                            "side slits. Pink trousers, has elasticated waistband", kurta) == \
        ("Pink kurta with trousers. Pink kurta. Pink trousers", 4)
    shoe = {"title": "Roadster Men Black Lace-Up Sneakers"}     # a cut "has a" item hands on its verb
    assert D.ground_details("Black sneakers, has a cushioned footbed, lace-up detail", shoe) == \
        ("Black sneakers, has lace-up detail", 1)
    assert D.ground_details("Black sneakers, has a cushioned footbed, lace-up detail", {"title": "ID Men Black Sneakers"}) == \
        ("Black sneakers", 2)                                    # judged as it reads: "has lace-up detail"
    bin_ = {"title": "SEJ by Nisha Gupta Red & Blue Printed Open Dry Bin"}   # "has a <part>" the title lacks
    assert D.ground_details("Red and blue printed open dry bin, has a double-layered lid", bin_) == \
        ("Red and blue printed open dry bin", 1)
    hoodie = {"title": "Russell Athletic Men Black Printed Hooded Sweatshirt"}
    assert D.ground_details("Black printed sweatshirt, has a hood", hoodie) == ("Black printed sweatshirt, has a hood", 0)
    assert D.ground_details("A fine bag with a TSA lock.", {"title": "Safari Bag"}) == ("A fine bag with a TSA lock.", 0)


def test_clean_for_training_counts_the_detail_cuts():
    from pdgen_core.finetune.train import clean_for_training

    spec = spec_from_dict(_spec(data={"uri": "synth://10", "ground_details": True, "min_chars": 20}))
    rows = [{"sku": "a", "title": "Parx Men Blue Checked Casual Shirt"}, {"sku": "b", "title": "ID Men Derbys"}]
    pairs = [D.Pair("a", "p", "Blue checked casual shirt, has a spread collar, long sleeves", rows[0]["title"]),
             D.Pair("b", "p", "Derbys, has a round neck", rows[1]["title"])]
    dropped: dict = {}
    kept = clean_for_training(spec, pairs, rows, dropped)
    assert [p.target for p in kept] == ["Blue checked casual shirt"]
    assert dropped == {"reference_details_cut": 2, "reference_too_short_after_cut": 1}


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct from the installed wheel, dequantized once into the test cache."""
    from pdgen_core.models.gguf import SMOLLM2_NAME
    from pdgen_core.models.resolve import ModelError, resolve_model

    try:
        return resolve_model(SMOLLM2_NAME)
    except ModelError as exc:
        pytest.skip(f"SmolLM2 is not available here: {exc}")


def test_chat_pairs_are_the_generation_prompt_and_end_the_turn(smollm2):
    from transformers import AutoTokenizer

    from pdgen_core.finetune.train import pairs_for
    from pdgen_core.models.chat import render
    from pdgen_core.tasks import TASKS

    spec = spec_from_dict(_spec(data={"uri": "synth://10", "min_chars": 20, "repair_glued": True},
                                model={"source": "smollm2-135m-instruct", "prompt_format": "chat"}))
    pairs, _ = pairs_for(spec, GLUED, smollm2)
    full = TASKS["description"].messages(GLUED[0], "en", "USD")
    assert len(full) > 2  # the task has worked examples; the adapter's prompt leaves them out
    assert pairs[0].prompt == render(str(smollm2), [full[0], full[-1]])
    assert pairs[0].prompt.endswith("<|im_start|>assistant\n")
    tok = AutoTokenizer.from_pretrained(smollm2)
    ids, labels = D.encode_pair(tok, pairs[0].prompt, pairs[0].target, 512)
    answer = [i for i, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(answer) == pairs[0].target + "<|im_end|>"   # the loss covers the answer and its end
    assert "lock. One handle" in pairs[0].target                  # the repaired reference
    with_examples = spec.model_copy(update={"model": spec.model.model_copy(update={"few_shot": True})})
    assert pairs_for(with_examples, GLUED, smollm2)[0][0].prompt == render(str(smollm2), full)


def test_worker_base_path_never_trains_a_model(tmp_path):
    from pdgen_core.finetune.loop import worker_base_path
    from pdgen_core.models.resolve import ModelError

    (tmp_path / "config.json").write_text("{}")
    spec = spec_from_dict(_spec())  # model.source: pdgen-tiny
    assert worker_base_path(spec, str(tmp_path)) == tmp_path
    with pytest.raises(ModelError, match="driver's node"):
        worker_base_path(spec, str(tmp_path / "elsewhere"))


def test_answer_loss_matches_the_full_logits_loss():
    import torch

    from pdgen_core.finetune.loop import answer_loss
    from pdgen_core.models.tiny import llama_config
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(300, hidden=64, layers=1, heads=1, max_positions=64)).eval()
    batch = D.collate([(list(range(3, 13)), [-100] * 6 + list(range(9, 13))),
                       (list(range(20, 27)), [-100] * 3 + list(range(23, 27)))], 0)
    total, n = answer_loss(model, batch)
    with torch.no_grad():
        ref = model(**batch).loss
    assert n.item() == 8 and torch.allclose(total / n, ref, atol=1e-5)


def test_clean_text_collapses_nbsp_newlines_and_leading_spaces():
    assert D.clean_text(" Black") == "Black"
    assert D.clean_text("a\u00a0b\n c  ") == "a b c"
    assert D.clean_text("   ") is None


# ---------------------------------------------------------------- metrics

def test_text_metrics_on_known_strings():
    row = {"title": "Acme Blue Cotton Shirt", "brand": "Acme", "color": "Blue"}  # the facts the guard checks
    same = M.text_metrics(["the blue acme shirt is cotton"], ["the blue acme shirt is cotton"], rows=[row])
    assert same["bleu"] == pytest.approx(100.0) and same["rougeL"] == pytest.approx(100.0)
    assert same["chrf"] == pytest.approx(100.0) and same["guard_pass"] == 100.0
    half = M.text_metrics(["blue shirt"], ["blue shirt with a collar"])
    # ROUGE-L: LCS 2, precision 2/2, recall 2/5 -> F1 = 2*1*0.4/1.4
    assert half["rougeL"] == pytest.approx(100 * 0.8 / 1.4)
    assert M.text_metrics(["zzz qqq"], ["blue shirt"])["rougeL"] == 0.0
    assert M.perplexity(math.log(5.0)) == pytest.approx(5.0)


def test_guard_pass_rate_flags_short_and_degenerate_text():
    texts = ["A blue cotton shirt from Acme for everyday wear.", "", "too short",
             "shirt shirt shirt shirt shirt shirt shirt shirt"]
    row = {"title": "Acme Blue Cotton Shirt", "brand": "Acme", "color": "Blue", "material": "Cotton"}
    rate, reasons = M.guard_results(texts, rows=[row] * 4)
    assert rate == 25.0 and sum(reasons.values()) == 3
    # judged as the guard stage does: a text cut at the token limit keeps its whole sentences
    cut = ["A blue cotton shirt from Acme for every day. It has long sle", "A blue cotton shirt from Acme with"]
    assert M.guard_reasons(cut, rows=[row] * 2, finish=["length", "length"]) == [None, "truncated"]
    # grounding_fail: of the texts every other check accepts, the share a grounding check refuses
    m = M.text_metrics(["A blue cotton shirt from Acme.", "A blue cotton shirt from Nike and Acme."],
                       ["x", "x"], rows=[row] * 2, known_brands=frozenset({"Acme", "Nike"}))
    assert m["guard_pass"] == 50.0 and m["grounding_fail"] == 50.0 and m["guard_fail_reasons"] == {"other_brand": 1}
    assert M.is_degenerate("nice nice nice nice") and not M.is_degenerate("a b c d e f g h")


def test_improved_respects_mode_and_min_delta():
    assert M.improved(1.0, None, "min") and M.improved(0.9, 1.0, "min") and not M.improved(0.95, 1.0, "min", 0.1)
    assert M.improved(30, 20, "max") and not M.improved(20, 30, "max")


def test_lr_schedule_warms_up_then_anneals_by_steps_or_time():
    from pdgen_core.finetune.loop import lr_factor

    s = spec_from_dict(_spec(optim={"warmup_steps": 10, "min_lr_ratio": 0.1}))
    assert lr_factor(s, 0, 100, 0) < lr_factor(s, 9, 100, 0) <= 1.0
    assert lr_factor(s, 10, 100, 0) == pytest.approx(1.0)
    assert lr_factor(s, 100, 100, 0) == pytest.approx(0.1)
    timed = spec_from_dict(_spec(optim={"warmup_steps": 0}, train={"max_seconds": 60}))
    assert lr_factor(timed, 5, 10**9, 60) == pytest.approx(0.1)  # time used up: fully annealed


def test_template_baseline_is_a_sentence_from_the_row():
    from pdgen_core.finetune.evaluate import template_baseline

    t = template_baseline({"title": "Parx Men Blue Slim Fit Shirt", "brand": "Parx", "gender": "Men",
                           "color": "Blue"})
    assert t == "Blue Slim Fit Shirt by Parx for men."


class _ByteTok:
    """Just enough tokenizer for encode_pair/generate: one id per byte, no special tokens."""
    pad_token_id, eos_token_id = 0, 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [2 + b for b in text.encode()][:500]}

    def batch_decode(self, rows, skip_special_tokens=True):
        return [bytes(int(i) - 2 for i in r if int(i) > 1).decode() for r in rows]


def test_held_out_scores_the_test_split_or_the_validation_split():
    from pdgen_core.finetune.evaluate import held_out

    spec = spec_from_dict(_spec(data={"uri": "synth://300", "val_fraction": 0.15, "test_fraction": 0.15},
                                model={"max_seq_len": 2048}))
    d = spec.data
    rows = D.load_rows(d.uri, d.columns, d.limit)
    splits = D.split_pairs(D.build_pairs(rows, spec.task, spec.locale, d.currency, d.min_chars, d.max_chars)[0],
                           d.val_fraction, d.test_fraction, d.split_salt)
    test, test_rows = held_out(spec, _ByteTok(), None)
    val, _ = held_out(spec, _ByteTok(), None, "val")
    assert [p.sku for p in test] == [p.sku for p in splits["test"]] and test
    assert [p.sku for p in val] == [p.sku for p in splits["val"]] and val
    assert not {p.sku for p in test} & {p.sku for p in val}
    assert [str(r["sku"]) for r in test_rows] == [p.sku for p in test]  # rows line up with pairs
    assert len(held_out(spec, _ByteTok(), 3)[0]) == 3
    with pytest.raises(ValueError, match="split 'train'"):
        held_out(spec, _ByteTok(), None, "train")


def test_eval_decoding_settings_are_checked_and_the_same_for_both_engines():
    from pdgen_core.finetune.evaluate import decoding_settings

    assert decoding_settings(64, 1.2, 3, "hf") == {"greedy": True, "max_new_tokens": 64,
                                                   "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
    assert decoding_settings(64)["repetition_penalty"] == 1.0  # off by default
    assert decoding_settings(64, 1.3, 0, "vllm")["repetition_penalty"] == 1.3
    with pytest.raises(ValueError, match="--engine hf"):
        decoding_settings(64, 1.0, 3, "vllm")  # vLLM cannot ban n-grams: refuse, never drop it silently
    with pytest.raises(ValueError, match="repetition_penalty"):
        decoding_settings(64, 0.0)
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        decoding_settings(64, 1.0, -1, "hf")


def test_hf_generate_passes_the_decoding_settings_to_every_batch():
    import torch

    from pdgen_core.finetune.loop import generate

    seen = []

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
            seen.append(kw)
            tail = torch.tensor([[2 + ord("o"), 2 + ord("k"), 1]] * input_ids.shape[0])
            return torch.cat([input_ids, tail], dim=1)

    out = generate(Model(), _ByteTok(), ["a", "bb", "c"], 4, batch_size=2, stops=("k",),
                   repetition_penalty=1.3, no_repeat_ngram_size=3)
    assert out == ["o", "o", "o"] and len(seen) == 2
    assert all(k["repetition_penalty"] == 1.3 and k["no_repeat_ngram_size"] == 3 and not k["do_sample"]
               for k in seen)
    generate(Model(), _ByteTok(), ["a"], 4)
    assert seen[-1]["repetition_penalty"] == 1.0 and seen[-1]["no_repeat_ngram_size"] == 0  # plain greedy


# ---------------------------------------------------------------- registry

def _fake_adapter(d: Path, tag: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "/cache/x"}))
    (d / "adapter_model.safetensors").write_bytes(tag.encode())
    (d / "trainer_state.pt").write_bytes(b"optimizer")   # not exported
    return d


def test_registry_versions_commit_last_and_resolve(tmp_path):
    out = str(tmp_path / "reg")
    card = {"run_id": "r1", "checkpoint": "c1", "base_model": {"source": "pdgen-tiny", "identity": "x"}}
    assert registry.publish(out, "description", _fake_adapter(tmp_path / "a", "one"), card)[0] == 1
    # a claimed but uncommitted version (a publisher that died) is invisible and its number skipped
    assert registry._claim(registry._task_loc(out, "description"), 2)
    v, uri = registry.publish(out, "description", _fake_adapter(tmp_path / "b", "two"), {**card, "checkpoint": "c2"})
    assert v == 3 and uri.endswith("/adapters/description/3")
    assert registry.committed_versions(out, "description") == [1, 3]
    path, ver = registry.resolve_adapter(out, "description", "latest")
    assert ver == 3 and (path / "adapter_model.safetensors").read_bytes() == b"two"
    assert not (path / "trainer_state.pt").exists()
    assert json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] == "pdgen-tiny"
    assert registry.read_card(path)["version"] == 3
    assert registry.resolve_adapter(out, "description", "1")[1] == 1
    with pytest.raises(registry.AdapterNotFound, match=r"committed: \[1, 3\]"):
        registry.resolve_adapter(out, "description", "2")
    # the same run's same checkpoint again: no new version
    assert registry.publish(out, "description", _fake_adapter(tmp_path / "c", "two"), {**card, "checkpoint": "c2"})[0] == 3
    assert [a["version"] for a in registry.list_adapters(out)] == [1, 3]
    # a full model (from-scratch run) is a version too, but not something to load as a LoRA
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    (full / "model.safetensors").write_bytes(b"w")
    assert registry.publish(out, "description", full, {"run_id": "s1", "checkpoint": "f"}, kind="full")[0] == 4
    assert registry.resolve_adapter(out, "description", "latest")[1] == 4
    with pytest.raises(registry.AdapterNotFound, match=r"is a full model, not a lora adapter.*model.source: .*/4"):
        registry.resolve_adapter(out, "description", "latest", kind="lora")
    assert registry.resolve_adapter(out, "description", "3", kind="lora")[1] == 3


def test_registry_on_s3_claims_with_conditional_put(s3, bucket, tmp_path):
    out = f"{bucket}/reg"
    tl = registry._task_loc(out, "description")
    assert registry._claim(tl, 1) and not registry._claim(tl, 1)
    v, _ = registry.publish(out, "description", _fake_adapter(tmp_path / "a", "s3"), {"run_id": "r", "checkpoint": "c"})
    assert v == 2
    path, ver = registry.resolve_adapter_uri(f"{out}/adapters/description/2", kind="lora")
    assert ver == 2 and (path / "adapter_model.safetensors").read_bytes() == b"s3"
    with pytest.raises(registry.AdapterNotFound, match="is a lora model, not a full adapter"):
        registry.resolve_adapter_uri(f"{out}/adapters/description/2", kind="full")
    with pytest.raises(registry.AdapterNotFound):
        registry.resolve_adapter(out, "blurb")
    # the registry recreated under the same URI: the node cache must not serve the old files
    from pdgen_core import storage

    storage.delete_tree(storage.resolve(out))
    assert registry.publish(out, "description", _fake_adapter(tmp_path / "b", "new"), {"run_id": "r2"})[0] == 1
    assert registry.resolve_adapter(out, "description")[0].joinpath("adapter_model.safetensors").read_bytes() == b"new"
    storage.delete_tree(storage.resolve(out))
    registry.publish(out, "description", _fake_adapter(tmp_path / "c", "newer"), {"run_id": "r3"})
    assert registry.resolve_adapter(out, "description")[0].joinpath("adapter_model.safetensors").read_bytes() == b"newer"


# ---------------------------------------------------------------- real runs (e2e)

@pytest.mark.e2e
def test_from_scratch_in_process_registers_a_full_model(tmp_path):
    from pdgen_core.finetune.run import run_finetune

    spec = spec_from_dict({
        "name": "e2e-scratch", "data": {"uri": "synth://300", "min_chars": 20, "val_fraction": 0.1},
        "model": {"from_scratch": True, "tiny": {"hidden": 64, "layers": 1, "vocab_size": 400}, "max_seq_len": 160},
        "train": {"max_steps": 3, "batch_size": 8, "eval_samples": 2, "max_new_tokens": 8},
        "resources": {"num_workers": 0}, "storage_path": str(tmp_path / "ray"), "output": {"uri": str(tmp_path / "reg")},
    })
    out = run_finetune(spec)
    path, v = registry.resolve_adapter(str(tmp_path / "reg"), "description")
    assert v == out["version"] == 1
    assert {"config.json", "model.safetensors", "tokenizer.json", "card.json"} <= {p.name for p in path.iterdir()}
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    assert registry.read_card(path)["kind"] == "full" and registry.read_card(path)["base_model"] is None
    from pdgen_core.finetune.evaluate import evaluate_spec

    # full models: HF generate, random init as "untuned"; --also-model adds another model's row
    report = evaluate_spec(spec, limit=3, max_new_tokens=8, also_models=[str(path)])
    assert report["engine"] == "hf" and report["n"] == 3 and report["systems"]["template"]["n"] == 3
    extra = f"{path} (untuned)"
    assert list(report["systems"]) == ["fine-tuned", "untuned", extra, "template"]
    assert report["systems"][extra]["n"] == 3 and f"| {extra} |" in report["table"]
    # the same weights decoded the same way: the extra row scores exactly as the fine-tuned one
    assert report["systems"][extra] == report["systems"]["fine-tuned"]
    # --guard-retry: the first attempt is the run above; only its rejected texts are generated again
    again = evaluate_spec(spec, limit=3, max_new_tokens=8, guard_retry=1.5)
    for name in ("fine-tuned", "untuned"):
        m, before = again["systems"][name], report["systems"][name]
        assert m["guard_pass_first"] == pytest.approx(before["guard_pass"])
        assert m["retried"] == round(3 * (100 - before["guard_pass"]) / 100)
        kept = [i for i, s in enumerate(report["samples"]) if s[name] == again["samples"][i][name]]
        assert len(kept) >= 3 - m["retried"]
    assert again["systems"]["untuned"]["retried"] > 0  # a random init writes nothing usable
    with pytest.raises(ValueError, match="guard_retry"):
        evaluate_spec(spec, limit=1, max_new_tokens=4, guard_retry=0.0)
    # generation loads a LoRA adapter by name; a full model is the base model, and saying so is the fix
    with pytest.raises(registry.AdapterNotFound, match="model.source"):
        registry.resolve_adapter(str(tmp_path / "reg"), "description", kind="lora")


def test_cli_commands_register_and_report_spec_errors(tmp_path):
    import typer
    from typer.testing import CliRunner

    from pdgen_core.cli.finetune import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    assert {"finetune", "eval"} <= {c.name for c in app.registered_commands}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {uri: synth://10}\nstorage_path: /tmp/a\noutput: {uri: /tmp/b}\nlr: 3\n")
    for cmd in ("finetune", "eval"):
        res = runner.invoke(app, [cmd, str(bad)])
        assert res.exit_code == 2 and "lr" in res.output and "remove `lr`" in res.output


def test_cli_eval_rejects_a_bad_split_or_engine_as_input_errors(tmp_path):
    import typer
    from typer.testing import CliRunner

    from pdgen_core.cli.finetune import register

    app = typer.Typer()
    register(app)
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(_spec(storage_path=str(tmp_path / "ray"), output={"uri": str(tmp_path / "reg")})))
    res = CliRunner().invoke(app, ["eval", str(good), "--split", "train"])
    assert res.exit_code == 2 and "split 'train'" in res.output
    res = CliRunner().invoke(app, ["eval", str(good), "--engine", "tgi"])
    assert res.exit_code == 2 and "engine 'tgi'" in res.output


@pytest.mark.e2e
def test_smollm2_lora_trains_resumes_registers_and_vllm_serves_the_adapter(ray_local, smollm2, bucket):
    """A few LoRA steps on the real SmolLM2 through Ray Train (chat pairs, short sequences, rank 2),
    checkpoints on S3, registered with its card; the same run with a higher step limit resumes from
    its checkpoint (as after a kill); then vLLM's CPU LoRA path generates with the adapter: the loss
    goes down and the adapter changes what the model writes."""
    from pdgen_core import storage
    from pdgen_core.finetune.evaluate import evaluate_spec
    from pdgen_core.finetune.run import run_finetune

    def lora_spec(max_steps: int):
        return spec_from_dict({
            "name": "e2e-smollm2", "data": {"uri": "synth://60", "min_chars": 20, "max_chars": 160,
                                            "val_fraction": 0.2, "test_fraction": 0.1, "repair_glued": True},
            "model": {"source": "smollm2-135m-instruct", "prompt_format": "chat", "max_seq_len": 192},
            "lora": {"rank": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "optim": {"lr": 1e-2, "warmup_steps": 0, "schedule": "constant", "weight_decay": 0.0},
            "train": {"epochs": 100, "max_steps": max_steps, "batch_size": 4, "eval_every_steps": 2,
                      "eval_pairs": 4, "eval_samples": 0},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "storage_path": f"{bucket}/ray", "output": {"uri": f"{bucket}/registry"},
        })

    first = run_finetune(lora_spec(4))
    assert first["metrics"]["step"] == 4 and first["metrics"]["stop_reason"] == "max_steps"
    assert first["version"] == 1 and first["checkpoint"].startswith(bucket + "/ray/e2e-smollm2/")
    # Same name, a higher limit: the loop resumes from the step-4 checkpoint, not from scratch.
    out = run_finetune(lora_spec(6))
    path, version = registry.resolve_adapter(f"{bucket}/registry", "description")
    card = registry.read_card(path)
    assert version == out["version"] == 2 and card["kind"] == "lora" and card["run_id"] == "e2e-smollm2"
    assert card["base_model"]["identity"].startswith("SmolLM2-135M-Instruct.Q4_1@gguf-sha256:")
    assert card["prompt"]["format"] == "chat" and card["prompt"]["few_shot"] is False
    assert card["data"]["pairs"]["train"] > 0 and "repaired" in card["data"]
    latest = max(storage.list_files(storage.resolve(f"{bucket}/ray/e2e-smollm2"), "pdgen_state.json"))
    state = json.loads(storage.read_bytes(storage.resolve("s3://" + latest)))  # every evaluation so far
    losses = [h["val_loss"] for h in state["history"]]
    assert state["resumed_at"] == [4]
    assert [h["step"] for h in state["history"]] == [2, 4, 6] and losses[-1] < losses[0]

    # `pdgen eval`'s path: one vLLM engine, the adapter through a LoRARequest, the base without it;
    # --guard-retry sends each system's rejected texts through the engine again
    report = evaluate_spec(lora_spec(6), limit=2, max_new_tokens=12, guard_retry=1.2)
    assert report["engine"] == "vllm" and report["n"] == 2 and report["adapter"]["version"] == 2
    assert {"fine-tuned", "untuned", "untuned (few-shot)", "template"} == set(report["systems"])
    assert any(s["fine-tuned"] != s["untuned"] for s in report["samples"])  # the adapter changes the text
    assert len(report["outputs"]) == 2
    assert all(set(o[n]) == {"text", "reason"} for o in report["outputs"] for n in report["systems"])
    for name in ("fine-tuned", "untuned"):
        m = report["systems"][name]
        assert m["guard_pass_first"] == pytest.approx(100.0 * (2 - m["retried"]) / 2)
    assert report["systems"]["template"]["retried"] == 0
    assert report["decoding"]["guard_retry"] == {"repetition_penalty": 1.2}
