"""The guardrails (set 3) on what a real model writes: the hand-labelled SmolLM2 corpus
(``tests/corpus/smollm2_labelled.jsonl``), one test per check on its examples, the whole guard's
misses and false rejects on it, and the checks on real human texts (Myntra descriptions).

Figures (README; ``python -m tests.corpus.measure`` prints them): 225 labelled texts, 57
publishable. Set 3 rejects 163 of the 168 unpublishable ones and 4 of the 57 publishable (7.0%,
all ``brand_missing`` on blurbs); 5 of the 58 texts it accepts are unpublishable (8.6%, still far
from issue 17's 2%: real words used wrongly, "an adiabatic girls' dress", "a self-designing top",
"a large doll for dummies"). On the held-out quarter (every 4th line, ``measure.held_out``): 41
of 42 caught, 0 of 14 false rejects, 1 miss of 15 accepted (set 2: 39, 0 and 3 of 17).
Set 2 was 143/168, 4/57 and 25 of 78 on all of it. The bounds below hold the guard at least
that good; tighten them when it gets better, never loosen them to pass.

Set 6 (subtypes within a kind, construction words, "has/with a" parts beyond the old list) leaves
those figures as they were and adds 27 lines (229-255): the LoRA adapters' Myntra descriptions that
set 5 accepted, labelled after set 6 was written from them. Its bounds there are its own
(``SET6_*``: 13 of 18 caught, 0 of 9 false rejects, 5 misses).

Set 7 (``degenerate``: rare words, a word said again one word later, a pattern word left without
its noun) was written from four of the remaining misses, so it is tuning, not a blind figure: on
the first 229 lines 168 of 171 caught, 4 of 58 false rejects, 3 misses of 57 accepted; on set 6's
lines 15 of 18, 0 of 9, 3 misses; the held-out quarter is unchanged (42 of 43, 0 of 14, 1 miss).

Set 8 (patterns: "printed", "checked", "striped", ... must be in the facts; "lace" and "synthetic"
as materials; "embellished" and "tie-up" as construction) was written from the LoRA v5 adapter's
descriptions that set 7 accepted (100 held-out Myntra rows, 2026-12-03), and adds 27 of them
(lines 256-282, ``SET8_LINES``): 12 unpublishable, all caught, and 15 publishable, none rejected.
Not blind either; the figures on the earlier lines did not move.
"""

from __future__ import annotations

import json

from dataclasses import replace
from pathlib import Path

import pytest

from pdgen_core.guardrails import REASONS, GuardContext, run_checks
from pdgen_core.guardrails.attributes import creatures, fact_words, find_mismatches, names_product, title_kinds
from pdgen_core.guardrails.degenerate import (
    dangling_adjectives, glued_words, loops, non_words, rare_words, repeated_clauses, repeated_phrases,
    repeated_words, split_repeats,
)
from pdgen_core.guardrails.echo import find_echo
from pdgen_core.guardrails.meta import find_meta
from pdgen_core.guardrails.names import find_names, respelt_brand
from pdgen_core.guardrails.numbers import stated_numbers
from pdgen_core.guardrails.truncation import check_truncated, trim_to_sentence
from pdgen_core.tasks import TASKS
from tests.corpus import measure, smollm2

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CORPUS = smollm2.load()
MAX_FALSE_REJECT = 0.10   # issue 17's target
MIN_CAUGHT = 0.97         # measured 168/171 under set 7 (set 3: 163/168; set 2: 143/168); held-out 42/43
MAX_MISSES = 3            # measured under set 7 (set 3: 5; set 2: 25); the target is 2% of accepted texts
# The bounds above are on the corpus's first 229 lines (sets 2-5). Lines 229- are set 6's: the
# LoRA adapter's Myntra texts that set 5 accepted, labelled after set 6 was written from them (not
# blind), with their own measured bounds.
SET5_LINES = 229
SET8_LINES = 256  # set 8's lines: the v5 adapter's texts set 7 accepted, labelled 2026-12-03
SET6_MIN_CAUGHT, SET6_MAX_MISSES, SET6_MAX_FALSE = 15, 3, 0   # set 7: 15 of 18, 3 misses, 0 of 9 (set 6: 13, 5, 0)


def example(fragment: str) -> dict:
    """The one corpus entry whose text contains ``fragment``."""
    found = [e for e in CORPUS if fragment in e["text"]]
    assert len(found) == 1, (fragment, len(found))
    return found[0]


def check(name: str, ex: dict, **ctx_changes) -> str | None:
    """One guardrail on a corpus entry, as the guard stage runs it."""
    text, finish = smollm2.published(ex)
    ctx = replace(smollm2.context(ex, finish), **ctx_changes)
    return run_checks([name], TASKS[ex["task"]].guard_text(text), ctx)


def ctx_of(**facts) -> GuardContext:
    return GuardContext(title=facts.get("title"), brand=facts.get("brand"), price=facts.get("price"),
                        fields=facts)


# ---------------------------------------------------------------- the corpus itself


def test_corpus_is_labelled_real_output_with_small_facts():
    real = [e for e in CORPUS if e["source"] == "smollm2"]
    assert len(real) >= 150 and {e["task"] for e in real} >= {"description", "blurb", "social_post", "ad_copy"}
    for e in CORPUS:
        assert e["label"] in ("publishable", "unpublishable"), e
        assert (e["label"] == "unpublishable") == bool(e["reasons"]), e
        assert set(e["reasons"]) <= REASONS | {"too_many_hashtags"}, e["reasons"]
        assert all(len(str(v)) <= 400 for v in e["facts"].values()), "facts are an excerpt, not the row"
    assert sum(e["label"] == "publishable" for e in CORPUS) >= 40


# ---------------------------------------------------------------- the whole guard on the corpus


def test_guard_false_rejects_on_publishable_texts():
    publishable = [e for e in CORPUS if e["label"] == "publishable"]
    rejected = [(smollm2.judge(e), e["text"]) for e in publishable if smollm2.judge(e)]
    assert len(rejected) <= MAX_FALSE_REJECT * len(publishable), rejected


def test_guard_on_the_held_out_quarter():
    """The lines the set-3 rules were not tuned on (``measure.held_out``) meet the same bounds."""
    held = [e for i, e in enumerate(CORPUS[:SET5_LINES]) if measure.held_out(i)]
    good = [e for e in held if e["label"] == "publishable"]
    bad = [e for e in held if e["label"] == "unpublishable"]
    assert sum(smollm2.judge(e) is not None for e in good) <= MAX_FALSE_REJECT * len(good)
    assert sum(smollm2.judge(e) is not None for e in bad) >= MIN_CAUGHT * len(bad)


def test_guard_rejects_unpublishable_texts():
    bad = [e for e in CORPUS[:SET5_LINES] if e["label"] == "unpublishable"]
    missed = [e["text"] for e in bad if smollm2.judge(e) is None]
    assert len(bad) - len(missed) >= MIN_CAUGHT * len(bad), missed
    assert len(missed) <= MAX_MISSES, missed


def test_guard_on_the_set6_lines():
    """Set 6's lines: the v3/v4 adapters' descriptions that set 5 accepted. What set 6 still misses
    is garble no word list sees ("A bag with a silver medium trolley", "adjusted ring")."""
    new = CORPUS[SET5_LINES:]
    bad = [e for e in new if e["label"] == "unpublishable"]
    good = [e for e in new if e["label"] == "publishable"]
    assert len(bad) >= 18 and len(good) >= 9
    caught = sum(smollm2.judge(e) is not None for e in bad)
    assert caught >= SET6_MIN_CAUGHT and len(bad) - caught <= SET6_MAX_MISSES
    assert sum(smollm2.judge(e) is not None for e in good) <= SET6_MAX_FALSE


def test_guard_on_the_set8_lines():
    """Set 8's lines: every v5 text that gave a pattern, material or detail the row lacks is
    caught, and none of the plain, true ones (grounded patterns among them) is rejected."""
    new = CORPUS[SET8_LINES:]
    bad = [e for e in new if e["label"] == "unpublishable"]
    good = [e for e in new if e["label"] == "publishable"]
    assert len(bad) >= 12 and len(good) >= 15
    assert [e["text"] for e in bad if smollm2.judge(e) is None] == []
    assert [e["text"] for e in good if smollm2.judge(e) is not None] == []


@pytest.mark.parametrize("text, title, expected", [
    # the v5 adapter's texts (set 7 accepted them), unedited
    ("Grey solid sweater with printed detail from Raymond.", "Raymond Men Grey Solid Woollen Sweater", ["printed"]),
    ("Red and off-white checked casual shirt from Gini and Jony.",
     "Gini and Jony Boys Red & Off-White Regular Fit Dyed Casual Shirt", ["checked"]),
    ("Black geometric cufflinks with lace inserts from JEWEL JUNCTION.", "JEWEL JUNCTION Black Geometric Cufflinks",
     ["lace"]),
    ("A pair of brown solid leather formal derbys from Geox. Synthetic upper.",
     "Geox Men Brown Solid Leather Formal Derbys", ["synthetic"]),
    ("Black solid playsuit with embellished detail from Cottinfab.", "Cottinfab Women Black Solid Playsuit",
     ["embellished"]),
    # grounded: the title gives the pattern or material in another form
    ("Pink printed floral tissue holder from SEJ by Nisha Gupta.",
     "SEJ by Nisha Gupta Pink Printed Floral Wooden Tissue Holder", []),
    ("Blue camouflage print woven regular shorts from Xpose.",
     "Xpose Women Blue Camouflage Print Skinny Fit Regular Shorts", []),
    ("A pair of black synthetic sandals from Beli. Synthetic upper.", "Black Synthetic Sandals", []),
    ("Blue checked shirt.", "Acme Men Blue Plaid Shirt", []),
    ("A pair of black leather shoes with lace closure.", "Acme Men Black Lace-Up Leather Shoes", []),
])
def test_patterns_and_materials_the_facts_lack(text, title, expected):
    assert find_mismatches(text, ctx_of(title=title)) == expected


def test_guard_rejects_every_quoted_failure():
    """The failures quoted in issue 17 and the brief, and pdgen-tiny's word salad."""
    for e in CORPUS:
        if e["source"] != "smollm2":
            assert smollm2.judge(e) is not None, e["text"]


# ---------------------------------------------------------------- ungrounded_number


@pytest.mark.parametrize("fragment", [
    "A 111.0\" round prism platter",                       # 111 inches, "9 years old"
    "aged 18+",
    "a 19-inch frame",
    "Magic 100% Slim",
    "He's about 2 lbs.",
    "up to 28 passengers",
    "62% of the price",
])
def test_ungrounded_number_on_corpus(fragment):
    assert check("numbers", example(fragment)) == "ungrounded_number"


@pytest.mark.parametrize("fragment", [
    "A 1000 piece jigsaw puzzle",                          # 26.75 x 19.75 inches: in the details
    "Each headband measures 19cm (H) and 15.5cm (W)",
    "A 7-in-1 combo game",
])
def test_grounded_numbers_on_corpus_pass(fragment):
    assert check("numbers", example(fragment)) is None


@pytest.mark.parametrize("text, facts, expected", [
    ("A 100ml bottle.", {"title": "Acme Toner 100 ml"}, None),           # units normalised
    ("A 100 ml bottle.", {"title": "Acme Toner 100ml"}, None),
    ("Weighs 2 lbs.", {"title": "Acme Bear", "attributes": "Weight: 2 pounds"}, None),
    ("Weighs 2 lbs.", {"title": "Acme Bear", "attributes": "Weight: 2 kg"}, "ungrounded_number"),
    ("Weighs 2 lbs.", {"title": "Acme Bear 2"}, None),                   # a bare 2 in the facts
    ("Lasts 5 years.", {"title": "Acme Mug", "attributes": "Height 5 cm"}, "ungrounded_number"),
    ("Now ₹1,299 only.", {"title": "Acme Tee", "price": 1299.0}, None),
    ("Seats 28 passengers.", {"title": "Acme Bus"}, "ungrounded_number"),
    ("A 12th-grade project.", {"title": "Acme 12 Pencils"}, "ungrounded_number"),   # ordinal
    ("For a 30th birthday.", {"title": "Amscan 30th Birthday Plates"}, None),
    ("100% cotton.", {"title": "Acme Tee", "material": "100% cotton"}, None),
    ("A 62% saving.", {"title": "Acme Tee"}, "ungrounded_number"),
])
def test_ungrounded_number_units(text, facts, expected):
    assert run_checks(["numbers"], text, ctx_of(**facts)) == expected


def test_stated_numbers_read_units():
    assert [(w, u) for w, _, u in stated_numbers("2 pounds, 100ml, 62%, 5 in stock, 3rd")] == [
        ("2", "lb"), ("100", "ml"), ("62", "%"), ("5", None), ("3", "ordinal")]


def test_review_digest_may_state_the_rating_scale():
    ctx = GuardContext(fields={"reviews": [{"text": "Soft.", "rating": 4}], "avg_rating": 4.0})
    assert run_checks(["numbers"], "Rated 4 of 5.", ctx) is None
    assert run_checks(["numbers"], "Rated 4 of 10.", ctx) == "ungrounded_number"


# ---------------------------------------------------------------- ungrounded_name


@pytest.mark.parametrize("fragment", [
    "A fully licensed Leviathan",
    "women from Tokyo, a fun and stylish gift",            # Tokyo Talkies cut to a place
    "Bvlgari is a French perfumer",
    "crafted by Ahlya Sterling",
    "a classic Japanese fashion brand",
    "Amazon's Facebook page",
    "by Graphic Design Co",
    "#India #SilkSilk",
])
def test_ungrounded_name_on_corpus(fragment):
    assert check("names", example(fragment)) == "ungrounded_name"



@pytest.mark.parametrize("fragment, respelt", [
    ("A street nine basic jumpsuit", ["street nine"]),          # STREET 9
    ("A plums bestseller kit for women", ["plums"]),            # Plum Bestseller Kit
    ("31.50 dollar big jigs for kids", ["big jigs"]),           # Bigjigs Toys, no brand field
])
def test_respelt_brand_on_corpus(fragment, respelt):
    ex = example(fragment)
    text, finish = smollm2.published(ex)
    assert respelt_brand(TASKS[ex["task"]].guard_text(text), smollm2.context(ex, finish)) == respelt
    assert check("names", ex) == "ungrounded_name"


@pytest.mark.parametrize("text, facts", [
    ("This dressberry women skirt is a gift.", {"title": "DressBerry Women Skirt", "brand": "DressBerry"}),
    ("Plum's bestseller kit, plums not included.", {"title": "Plum Bestseller Kit", "brand": "Plum"}),
    ("A toy for cats.", {"title": "CAT Women Boots", "brand": "CAT"}),          # a plural, not the brand's place
    ("Bath Blocks float.", {"title": "BathBlocks Boat", "attributes": "Bath Blocks bring fun"}),
    ("A STREET 9 jumpsuit.", {"title": "STREET 9 Women Jumpsuit", "brand": "STREET 9"}),
])
def test_the_brand_as_the_row_writes_it_passes(text, facts):
    assert respelt_brand(text, ctx_of(**facts)) == []


@pytest.mark.parametrize("fragment", [
    "A long sleeve bodysuit for girls from GAP",
    "An INVU Men Rectangle Sunglasses T1902B",             # a model number the title gives
    "A 7-in-1 combo game with chess, Ludo, Chinese checkers",   # "Chinese" is in the title
    "This Pepe Jeans boys navy blue printed round neck t-shirt",
    "in the Wild West",
    "A green running shoes for men from Puma",
])
def test_grounded_names_on_corpus_pass(fragment):
    # "the Wild West" of a Wild Republic horse is in the row's details.
    assert check("names", example(fragment)) is None


@pytest.mark.parametrize("text", [
    "A soft tee. This tee is light. Perfect for summer. Crafted from cotton. Meet the tee.",
    "Perfect For Summer Parties",                          # a Title Case headline
    "Stay cool in July. #SummerStyle #CottonTee",
    "A USB-C charger with LED lights, in XL. Ideal for Christmas.",
])
def test_ordinary_capitalised_words_are_not_names(text):
    assert find_names(text, ctx_of(title="Acme Cotton Tee USB Charger")) == []


def test_names_from_the_facts_pass_however_written():
    ctx = ctx_of(title="U.S. Polo Assn. Men Navy Polo", brand="U.S. Polo Assn.")
    assert find_names("A navy polo from U.S. Polo Assn. for men.", ctx) == []
    assert find_names("A navy polo sold on Myntra.", ctx) == ["Myntra"]
    assert find_names("The WH1000XM4 headphones.", ctx_of(title="Sony Headphones")) == ["WH1000XM4"]


# ---------------------------------------------------------------- attribute_mismatch


@pytest.mark.parametrize("fragment, word", [
    ("A leather oxford with a bright red finish", "red"),          # tan brown oxfords
    ("A red regular fit shorts for boys", "red"),                  # black & grey
    ("A stretchable canvas top for women by SPYKAR", "canvas"),    # cropped jeans
    ("underwired lavaline bag", "bag"),                            # a bra
    ("A green checked suitcase for men", "suitcase"),              # a shirt
    ("Cotton Boxer XYBOX3PCKN136, a fun and affordable toy", "toy"),
    ("A handmade block heel for women", "handmade"),
    ("This flying machine boys blue shorts", "shorts"),            # jeans
    ("plush toys made of gold", "gold"),
    ("A silk scarf for women, a classic scarf for men.", "men"),   # a saree, a Women row
])
def test_attribute_mismatch_on_corpus(fragment, word):
    ex = example(fragment)
    text, finish = smollm2.published(ex)
    assert word in find_mismatches(text, smollm2.context(ex, finish))
    assert check("attributes", ex) == "attribute_mismatch"


@pytest.mark.parametrize("fragment", [
    "A grey top made by Clovia",
    "A green hooded sweater for men from YWC",                     # sweatshirt: a top too
    "A beautiful beige and maroon printed skirt for women from Sera",   # kurta with skirt
    "A pink sash with black lettering",                            # colours in the details
    "A plastic soccer ball inflatable",
])
def test_grounded_attributes_on_corpus_pass(fragment):
    assert check("attributes", example(fragment)) is None


@pytest.mark.parametrize("fragment, words", [
    ("perfect for men of all sizes", ["all sizes"]),                 # a fit promise
    ("A classic puzzle with a storybook theme", ["storybook theme"]),  # a general-store scene
    ("A building with a beach theme", ["beach theme"]),              # bath blocks
    ("The finest gold earrings in Jewels Galaxy", ["finest"]),       # a superlative
    ("a premium option for women's beauty", ["premium"]),
    ("A ultra-thin, multi-purpose card storage box", ["thin"]),      # a Super Thick toploader
    ("A green straight kurta jacket for men", ["jacket"]),           # a kurta
])
def test_invented_claims_on_corpus(fragment, words):
    ex = example(fragment)
    text, finish = smollm2.published(ex)
    assert find_mismatches(text, smollm2.context(ex, finish)) == words
    assert check("attributes", ex) == "attribute_mismatch"


@pytest.mark.parametrize("text, facts, expected", [
    ("The best tee we sell.", {"title": "Acme Tee"}, ["the best"]),
    ("Rated best in the Acme range.", {"title": "Acme Tee"}, []),      # no superlative claim
    ("A premium cotton tee.", {"title": "Acme Premium Cotton Tee"}, []),
    ("A princess-themed sash.", {"title": "Princess Party Sash"}, []),   # the theme is the row's
    ("A jungle-themed sash.", {"title": "Princess Party Sash"}, ["jungle-themed"]),
    ("Fits all sizes.", {"title": "Acme Cap, One Size"}, []),
    ("A thin, light notebook.", {"title": "Acme Thin Notebook"}, []),
    ("A thick notebook.", {"title": "Acme Slim Notebook"}, ["thick"]),
    ("A sleeveless dress.", {"title": "Acme Long Sleeve Dress"}, ["sleeveless"]),
    ("Bachmann, the world's largest maker of box cars.", {"title": "Bachmann Box Car"}, ["world's largest"]),
    ("The most expensive dragonball ever created.", {"title": "Banpresto Dragonball Figure"},
     ["most expensive dragonball ever"]),
    ("A figure like no other ever made.", {"title": "Acme Figure"}, ["ever made"]),
    ("Loved by kids everywhere.", {"title": "Acme Ball"}, []),
])
def test_claims_and_opposites(text, facts, expected):
    assert find_mismatches(text, ctx_of(**facts)) == expected


# "has a <detail>": what the LoRA adapter trained on cut references still wrote (v3, 100 held-out
# Myntra rows, 2026-12-01; 55 of its 87 accepted texts invented the detail). Texts unedited.
@pytest.mark.parametrize("text, title, expected", [
    ("Navy Blue and Maroon checked casual shirt from HIGHLANDER, has a tie-up collar.",
     "HIGHLANDER Men Navy Blue & Maroon Slim Fit Checked Casual Shirt", ["tie-up", "tie-up collar"]),
    ("Red and Blue printed open dry bin from SEJ by Nisha Gupta, has a double-layered lid.",
     "SEJ by Nisha Gupta Red & Blue Printed Open Dry Bin", ["double-layered lid"]),
    ("Black geometric cufflinks from JEWEL JUNCTION, has a hood.",
     "JEWEL JUNCTION Men Black Geometric Cufflinks", ["hood"]),
    ("Silver-plated stone-studded ring from Crunchy Fashion, has a round shape.",
     "Crunchy Fashion Silver-Plated Stone-Studded Ring", ["round shape"]),
    ("Brown sandals from ID, has a pair of regular ankle-high detail.", "ID Men Brown Sandals",
     ["regular ankle-high detail"]),
    ("Black colourblocked thong flip-flop with a tie-up detail from Liberty.",
     "Liberty Women Black Colourblocked Thong Flip-Flops", ["tie-up", "tie-up detail"]),
    # grounded in the title, or praise on a generic noun: passes
    ("Black printed sweatshirt from Russell Athletic, has a hood.",
     "Russell Athletic Men Black Printed Hooded Sweatshirt", []),
    ("Blue striped T-shirt from Parx, has a polo collar.", "Parx Men Blue Striped Polo Collar T-shirt", []),
    ("A blue cotton shirt from Parx that has a sleek design and a classic look.",
     "Parx Men Blue Cotton Shirt", []),
    ("A fine bag with a TSA lock.", "Safari Bag", []),
])
def test_has_a_detail_the_facts_lack(text, title, expected):
    assert find_mismatches(text, ctx_of(title=title)) == expected


@pytest.mark.parametrize("text, bad", [
    # the v4 adapter's accepted texts (set 5 before this check), unedited
    ("A pair of mustard yellow solid acrylic sweater from DressBerry.", True),
    ("A pair of single-door curtain from Soumya.", True),
    ("Brown sandals from ID, have a pair of ankle-high.", True),
    ("A pair of cream-coloured and yellow floral print A-line dress from Palm Tree.", True),
    ("A pair of black and white sneakers from Puma.", False),
    ("A pair of gold-plated earrings, perfect for parties.", False),
    ("Each pair of socks is soft.", False),
    ("A pair of pillow covers and a bedsheet.", False),
])
def test_a_pair_of_one_thing_is_degenerate(text, bad):
    from pdgen_core.guardrails.degenerate import lone_pairs

    assert bool(lone_pairs(text)) is bad
    ctx = ctx_of(title="Acme Product")
    if bad:   # (a good text may still fail another degenerate sign: not this test's point)
        assert run_checks(["degenerate"], text, ctx) == "degenerate"


@pytest.mark.parametrize("text,bad", [
    # SmolLM2 on a held-out Amazon toy (set 6 accepted it, 2026-12-02): a sentence said twice
    ("A bright yellow school bus toy for kids! Includes bus driver and 4 Miniature passenger "
     "figurines. Includes bus driver and 4 Miniature passenger figurines. Includes stop sign and "
     "ramp. Sturdy design and a classic look.", True),
    ("这件衣服很好看非常舒服。这件衣服很好看非常舒服。", True),
    ("Soft cotton tee. Machine wash cold. Soft.", False),             # short sentences may echo
    ("A 19cm tall vase. It stands 19cm tall on a shelf.", False),    # a size restated in other words
])
def test_a_sentence_said_twice_is_repetition(text, bad):
    """Numbers kept the old 6-word check (degenerate.repeated_clauses) from seeing this one. In
    the real human copy a whole sentence said twice is rare and is itself redundant copy: 11 of
    12,491 Myntra descriptions (the same lipstick blurb pasted twice) and 1 of 22,641 reviews."""
    from pdgen_core.guardrails.repetition import repeated_sentences

    assert bool(repeated_sentences(text)) is bad
    ctx = replace(ctx_of(title="Battat Light & Sound School Bus"), locale="zh" if "衣服" in text else "en")
    assert (run_checks(["repetition"], text, ctx) == "repetition") is bad


@pytest.mark.parametrize("fragment", [
    "nail-polishing product for women",                    # a watch
    "An affordable and stylish men's sportswear for men",  # a checked shirt
    "women's workwear, a great option",                    # a Titan watch
])
def test_a_text_that_never_names_the_product_on_corpus(fragment):
    ex = example(fragment)
    text, finish = smollm2.published(ex)
    assert not names_product(text, smollm2.context(ex, finish))
    assert find_mismatches(text, smollm2.context(ex, finish)) in ([], ["premium"])
    assert check("attributes", ex) == "attribute_mismatch"


@pytest.mark.parametrize("fragment", [
    "A grey top made by Clovia",                           # "top" a noun after an adjective
    "This Kazo blue solid bardot top",
    "A collaborative trapezoid activity table",            # "Short Legs" names no shorts
    "A stretchable mid-rise jeans for men",
    "A pink sash with black lettering",                    # no type in the title: not judged
])
def test_a_text_that_names_the_product_on_corpus(fragment):
    ex = example(fragment)
    text, finish = smollm2.published(ex)
    assert names_product(text, smollm2.context(ex, finish))
    assert check("attributes", ex) is None


def test_title_kinds_read_the_product_not_every_word():
    assert title_kinds(ctx_of(title="Clovia Women Grey Pure Cotton Printed Top")) == {"top"}
    assert title_kinds(ctx_of(title="Sera Women Printed Kurta with Skirt")) == {"top", "skirt"}
    assert title_kinds(ctx_of(title="Sport Squad 40 inch Table Top Air Hockey Table")) == set()
    assert title_kinds(ctx_of(title="Flash Activity Table - Height Adjustable Short Legs")) == set()
    assert title_kinds(ctx_of(title="Geox Women Black Leather Ballerinas")) == {"footwear"}
    ctx = ctx_of(title="Geox Women Black Leather Ballerinas")
    assert names_product("A black leather ballerina for women.", ctx)
    assert not names_product("A black leather item for women.", ctx)


def test_faq_and_review_digest_need_not_name_the_product():
    """An FAQ answer or a review digest speaks of the product without naming its type."""
    ctx = ctx_of(title="Acme Women Black Leather Ballerinas", gender="Women")
    answer = "Yes, it is machine washable."
    assert run_checks(["attributes"], answer, ctx) == "attribute_mismatch"
    for task in ("faq", "review_digest"):
        assert "attributes.mismatch" in TASKS[task].guardrails
        assert "attributes" not in TASKS[task].guardrails
        assert run_checks(TASKS[task].guardrails, answer, ctx) is None
    for task in ("description", "blurb", "social_post", "ad_copy"):
        assert "attributes" in TASKS[task].guardrails


def test_attribute_words_in_the_facts_are_fine():
    ctx = ctx_of(title="Acme Women Copper Bottle", gender="Women", color="Copper")
    assert find_mismatches("A copper bottle for women.", ctx) == []
    assert find_mismatches("A steel bottle for men.", ctx) == ["steel", "men"]
    assert find_mismatches("A blue shirt.", ctx_of(title="Acme Navy Shirt")) == []   # a shade
    assert find_mismatches("It suits any occasion; a zip on the top.", ctx_of(title="Acme Jeans")) == []


# ---------------------------------------------------------------- meta_text and prompt_echo


@pytest.mark.parametrize("text", [
    "As an AI language model, I cannot browse products.",
    "Sure! Here is a description of the shirt: a navy shirt.",
    "A tan bag. I hope this helps!",
    "A tan bag. Let me know if you want changes.",
    "I'm thrilled to help! Meet the bag.",
    "Here's a short blurb for you: a tan bag.",
    "This item has been added to your cart successfully.",            # held-out Amazon rows
    "Deluxe Over-The-Track Signal - 31.19 USD\nThis is a great product to buy!",
])
def test_meta_text(text):
    assert find_meta(text) and run_checks(["meta"], text, GuardContext()) == "meta_text"


@pytest.mark.parametrize("text", [
    "Here is a bag you will love carrying every day.",     # no work named after "here is"
    "A sure-footed boot for hikers; I-beam frame.",
    "Certainly the softest tee we sell.",
    "Add a pop of colour to your bag.",
])
def test_meta_text_passes_copy(text):
    assert find_meta(text) == []


# The worked answers the 200 SmolLM2 texts were prompted with (commit 8d3d862).
OLD_EXAMPLES = """\
system: You write product descriptions for an online store. Use only the facts the user gives.
user: |
  Product facts:
  Title: {{ row.title | plain }}
  Write the product description.
examples:
  - row: {title: Lavie Women Tan Solid Handheld Bag}
    output: A solid tan handheld bag for women from Lavie, simple to carry every day.
  - row: {title: Wooden Shape Sorting Cube}
    output: {headline: Wooden Shape Sorter, body: A wooden shape sorting cube for babies and toddlers.}
"""


@pytest.mark.parametrize("fragment", [
    "A wooden shape sorting cube for rides on the road",   # a race track
    "A wooden shape sorting cube for animals and pets",    # a logging truck
    "simple to carry every day",                           # a T-shirt
])
def test_prompt_echo_of_a_worked_example_on_corpus(fragment):
    assert check("echo", example(fragment), system_prompt=OLD_EXAMPLES) == "prompt_echo"


@pytest.mark.parametrize("fragment", [
    "Product facts: Title:",
    "Write the product description. A navy",
    "Audience: budget.",
    "Use only the facts the user gives.",
])
def test_prompt_echo_of_the_scaffolding(fragment):
    assert check("echo", example(fragment)) == "prompt_echo"


def test_prompt_echo_passes_the_rows_own_words():
    ctx = GuardContext(system_prompt=OLD_EXAMPLES, fields={"title": "Lavie Women Tan Handheld Bag"})
    assert find_echo("A solid tan handheld bag for women from Lavie.", ctx) == []
    assert find_echo("A tan bag, simple to carry every day.", ctx)
    assert find_echo("The title says it all: a bag.", ctx) == []   # "title" without a colon


# ---------------------------------------------------------------- degenerate


@pytest.mark.parametrize("fragment", [
    "navyMeetMeet the Blue Yonder",
    "Meet canvasThisAMeet canvas canvas canvas canvas",
    "navyThis bambooA",
    "A white and black men's men's men's",
    "A khaki khaki men's",
    "An Inc 5 gold-tiled wavens",
    "A red bracakelet",
    "unsuspension curtains",
    "A light up robots for kids, a toy for kids, a great idea for kids.",
    "A white off-white curtain for unisex, a fun",          # "For: Unisex" copied, no noun
    "a great choice for men's men",                         # a word after its own possessive
    "it teaches them about different animals, their habitats",   # a clause restated
    "A Converter for Converter models",                     # a word not in the facts, looping
])
def test_degenerate_on_corpus(fragment):
    assert check("degenerate", example(fragment)) == "degenerate"


def test_degenerate_finds_each_sign():
    ctx = GuardContext()
    assert glued_words("Meet canvasThisAMeet canvas", ctx) == ["canvasThisAMeet"]
    assert loops("Meet canvasThisAMeet canvas canvas canvas canvas") == ["canvas canvas", "canvas"]
    assert loops("Meet canvas canvas canvasThis") == ["canvas canvas", "canvas"]   # glue split
    assert loops("love it, love it, love it") == []        # clauses, not a loop
    assert loops("#LavieSales #Lavie #LavieSales") == ["#laviesales"]
    assert repeated_phrases("bullhorn speaker. A bullhorn speaker, the bullhorn speaker.") == ["bullhorn speaker"]
    assert non_words("A soft bracakelet with seesaw charms.", ctx) == ["bracakelet"]
    assert loops("A great choice for men's men.") == ["men's men"]
    assert loops("The kid's own room, for men's wear.") == []
    assert repeated_clauses("Soft and warm for cold winter days. Wear it on cold winter days.") == []
    assert repeated_clauses("Good for long walks in the park. Also good for long walks in the park.") == [
        "good for long walks in the", "for long walks in the park"]
    assert repeated_words("A Converter for Converter models to convert Converter models.", ctx) == ["converter"]
    assert repeated_words("A set of 5 headbands, each headband soft; headbands for parties.",
                          ctx_of(title="Party Headbands")) == []


@pytest.mark.parametrize("word", ["iPhone", "PlayStation", "McDonald", "AccessHer", "DKNY", "MacBook", "eBay"])
def test_real_camel_case_passes_when_in_the_facts(word):
    ctx = ctx_of(title=f"{word} Case", brand=word)
    assert run_checks(["degenerate"], f"A {word} case, made for daily use.", ctx) is None


def test_camel_case_not_in_the_facts_is_glued():
    assert glued_words("A PlayStation case.", ctx_of(title="Acme Case")) == ["PlayStation"]
    assert glued_words("An iPhone case.", ctx_of(title="Acme Case")) == []   # a one-letter prefix


# ---------------------------------------------------------------- truncated


def test_a_cut_text_keeps_its_complete_sentences():
    ex = example("A sturdy wooden doll house furniture")          # cut inside "a seesaw, a sees"
    text, finish = smollm2.published(ex)
    assert ex["finish_reason"] == "length" and finish == "stop"
    assert text.endswith("A great gift for any family with a lot of toys.")
    assert smollm2.judge(ex) is None


def test_a_cut_text_with_no_complete_sentence_is_truncated():
    cut = "A durable, durable, a fun, fun, a fun, a fun"
    assert trim_to_sentence(cut) is None
    assert check_truncated(cut, GuardContext(finish_reason="length")) == "truncated"
    assert check_truncated(cut, GuardContext()) is None
    assert trim_to_sentence("Fits 12.5 in. wide. Soft, light and") == "Fits 12.5 in. wide."


def test_ad_copy_cut_by_guided_decoding_is_truncated():
    assert smollm2.judge(example('"Rubie\'s Marvel: Avengers EndeG"')) == "truncated"
    assert TASKS["ad_copy"].parse('{"headline": "Soft Cotton Tee", "body": "A soft tee."}') is None


@pytest.mark.parametrize("headline, title, cut", [
    # SmolLM2 on real Myntra rows (2026-12-01): the 30-character limit fell inside a title word
    ("Raymond Men Maroon Striped Col", "Raymond Men Maroon Striped Collar Formal Shirt", True),
    ("Baby Doll Bedding Chevron Wind", "Baby Doll Bedding Chevron Window Valance", True),
    ("Raymond Maroon Striped Collar", "Raymond Men Maroon Striped Collar Formal Shirt", False),  # a whole word
    ("Striped Col", "Raymond Men Maroon Striped Collar Formal Shirt", False),   # short: not at the limit
    # held-out Amazon rows (2026-12-01)
    ("MerryMakers Henry & Leo the LY", "MerryMakers Henry & Leo the Lion Plush Doll, 15-Inch", True),
    ("SunWorks PAC6525 Construction ", "SunWorks PAC6525 Construction Paper, 11 Assorted Colors", True),
    ("Vallejo Acrylic Paint, Khaki", "Vallejo Acrylic Paint, Khaki", False),
])
def test_ad_copy_headline_cut_inside_a_title_word_is_truncated(headline, title, cut):
    ground = TASKS["ad_copy"].ground
    text = json.dumps({"headline": headline[:30], "body": "Sharp stripes for the office."})
    assert ground(text, {"title": title}) == ("truncated" if cut else None)


# ---------------------------------------------------------------- real human texts


def _myntra():
    pq = pytest.importorskip("pyarrow.parquet")
    path = REAL / "myntra-fashion-catalog" / "myntra_products_catalog.parquet"
    if not path.exists():
        pytest.skip(f"{path} not present")
    return pq.read_table(path).to_pylist()


def _row_ctx(r: dict) -> GuardContext:
    return ctx_of(title=r["product_name"], brand=r["brand"], gender=r["gender"],
                  color=(r["primary_color"] or "").strip() or None)


def test_degenerate_on_real_myntra_descriptions():
    """Of 12,491 human descriptions 38% have glued words: the scraper dropped the line breaks
    ("lace-up detailSynthetic upperCushioned footbed"), real defects a page must not show (30 of
    30 sampled were). Of those without, 1.3% are flagged (set 2: 1.1%), most for typos ("staight", "balack");
    about 4 in 10 of the set-2 flags are real words or meant repeats: a false-reject rate near 0.5%.
    Set 3's repeat rules add 22 flags, nearly all meant repeats in spec lists ("back closure Back
    style", "Plant type: ... plant"): about 0.8% in all. Set 7's rare-word rule flags 100 more
    (188 of 7,738, 2.4%): about a third are typos ("sleevs", "embriodered", "elastictaed"), most of
    the rest perfume notes and tailoring words ("tuberose", "orris", "pintuck", "wrapover") that a
    model given the title alone would be inventing. As a false-reject rate on human copy that is
    about 0.9% more; the bound was 2% before set 7."""
    rows = _myntra()
    clean = [r for r in rows if not glued_words(r["description"] or "", _row_ctx(r))]
    flagged = [r["description"][:80] for r in clean
               if run_checks(["degenerate"], r["description"] or "", _row_ctx(r))]
    assert len(clean) > 0.5 * len(rows)
    assert len(flagged) <= 0.025 * len(clean), flagged[:10]


def test_a_rows_own_title_passes_the_facts_checks():
    """A text made of the row's own words is grounded however they are written: brand CamelCase
    ("DressBerry", "AccessHer"), model numbers, places in brand names ("Indian Terrain")."""
    rows = _myntra()
    failed = [r["product_name"] for r in rows
              if run_checks(["degenerate", "names", "attributes", "numbers"], f"{r['product_name']}.", _row_ctx(r))]
    assert len(failed) <= 0.005 * len(rows), failed[:10]


def test_an_answer_like_a_worked_example_is_not_an_injection_echo():
    """The chat YAML's worked answers are not instructions: a row like the example's may be
    described the same way (``prompt_echo`` judges copies against the row's facts)."""
    facts = {"title": "Roadster Men Navy Blue Slim Fit Cotton Casual Shirt", "brand": "Roadster",
             "gender": "Men", "color": "Navy Blue"}
    task = TASKS["description"]
    ctx = replace(ctx_of(**facts), system_prompt=task.template_source("en", "chat"),
                  input_texts=tuple(facts.values()))
    answer = "A navy blue casual shirt for men from Roadster, in a slim fit and made of cotton."
    assert run_checks(task.guardrails, answer, ctx) is None
    instruction = "Use only the facts the user gives. Never invent a brand, material, colour, size"
    assert run_checks(["injection"], instruction, ctx) == "injection_echo"


def test_the_held_out_amazon_rows_are_the_ones_the_corpus_never_used():
    from tests.corpus import amazon_heldout as H

    if not H.SAMPLE.exists():
        pytest.skip(f"{H.SAMPLE} not present")
    held = H.rows()
    used = H.rows(part=slice(0, 65))   # make_smollm2_corpus.py's Amazon rows
    assert len(held) == 100 and len({r["sku"] for r in held}) == 100
    assert not {r["sku"] for r in held} & {r["sku"] for r in used}
    corpus = {e["sku"].split(":", 1)[1] for e in smollm2.load() if e["sku"].startswith("amazon:")}
    assert corpus and not corpus & {r["sku"][3:] for r in held}   # no labelled text is of a held-out row
    assert all(r["title"] and set(r) == {"sku", "title", "brand", "category", "price", "attributes"} for r in held)


# ---------------------------------------------------------------- set 6: subtypes, construction, broader "has"
# The v4 LoRA adapter's texts that set 5 accepted (SmolLM2 + LoRA, 100 held-out Myntra rows,
# 2026-12-01, /tmp/exp/ft23_outputs_v1.json), unedited, with their Myntra titles.


@pytest.mark.parametrize("text, title, expected", [
    ("Black solid leather boots from Geox.", "Geox Men Black Solid Leather Boat Shoes", ["boots"]),
    ("Brown printed heeled sneakers from Metro.", "Metro Women Brown Printed Heels", ["sneakers"]),
    ("Blue joggers from Roadster, stretchable and slim.", "Roadster Women Blue Skinny Fit Stretchable Jeans", ["joggers"]),
    ("A black cardigan from Raymond.", "Raymond Men Black Solid Sweater", ["cardigan"]),
    # the same subtype, a broader or generic word, a refinement of a generic title: pass
    ("Black leather driving shoes from Geox.", "Geox Men Black Leather Driving Shoes", []),
    ("Brown leather sneakers from ID.", "ID Men Brown Leather Sneakers", []),
    ("Black sneakers for men.", "Roadster Men Black Casual Shoes", []),
    ("Navy blue solid track pants, comfortable trousers for training.",
     "Alcis Men Navy Blue Solid Slim Fit Training Track Pants", []),
    ("Navy blue solid tactical pants from Alcis.", "Alcis Men Navy Blue Solid Slim Fit Training Track Pants",
     ["cargopants"]),
    ("A green hooded sweater for men from YWC.", "YWC Men Olive Green Colourblocked Hooded Sweatshirt", []),
    ("Peach open toe heeled sandals.", "Shoetopia Women Peach-Coloured Colourblocked Heels", []),
    # a type worn with it, a type word qualifying a part, a type inside the brand
    ("A navy jacket that layers easily over a hoodie.", "Northwind Navy Packable Jacket", []),
    ("Pink kurta, has a shirt collar and cap sleeves.", "Libas Women Pink A-Line Kurta",
     ["shirt collar", "cap sleeves"]),   # invented details, but no shirt and no cap
    ("Brown printed bomber jacket.", "U.S. Polo Assn. Men Brown Printed Bomber Jacket", []),
])
def test_a_type_swapped_within_its_kind(text, title, expected):
    brand = title.split(" Men ")[0].split(" Women ")[0]
    assert find_mismatches(text, ctx_of(title=title, brand=brand)) == expected
    if expected:
        assert run_checks(["attributes"], text, ctx_of(title=title, brand=brand)) == "attribute_mismatch"


def test_subtype_swaps_on_human_myntra_descriptions_are_rare():
    """Myntra's own descriptions against their titles: the subtype rule flags 18 of 11,291 rows
    whose title names a type (0.16%), nearly all where the human copy contradicts its own title
    ("T-shirt" for a Sweatshirt row) or names a jacket a layered kurta comes with."""
    from pdgen_core.guardrails.attributes import type_swaps

    rows = _myntra()
    judged = flagged = 0
    for r in rows:
        ctx = replace(_row_ctx(r), brand=r["brand"])
        if title_kinds(ctx):
            judged += 1
            flagged += bool(type_swaps(r["description"] or "", ctx))
    assert judged > 10_000 and flagged <= 0.005 * judged, flagged


@pytest.mark.parametrize("text, title, expected", [
    ("Blue knitted mid-rise jeans from Roadster.",
     "Roadster Women Blue Skinny Fit Mid-Rise Ankle Length Mildly Distressed Stretchable Jeans", ["knitted"]),
    ("Blue solid woven blue-toned knitted jacket from HERE&NOW.", "HERE&NOW Women Blue Solid Bomber Jacket", ["knitted"]),
    ("Silver-plated lace-up necklace from Moedbuille.", "Moedbuille Women Silver-Plated Layered Necklace", ["lace-up"]),
    ("A grey knitted sweater from Raymond.", "Raymond Men Grey Solid Woollen Sweater", []),   # a sweater is knitted
    ("Black lace-up sneakers from Roadster.", "Roadster Men Black Lace-Up Sneakers", []),
    ("A pink embroidered kurta.", "Libas Women Pink Embroidered Kurta", []),
])
def test_construction_the_facts_do_not_give(text, title, expected):
    assert find_mismatches(text, ctx_of(title=title)) == expected


@pytest.mark.parametrize("text, title, expected", [
    ("Black coloured thong flip-flop with a backstrap from Liberty.",
     "Liberty Men Black Colourblocked Thong Flip-Flops", ["backstrap"]),
    ("Nude-Coloured solid T-shirt bra with a fitted back from PARFAIT.",
     "PARFAIT Plus Size Nude-Coloured Solid Underwired Lightly Padded T-shirt Bra P5441", ["fitted back"]),
    ("Fresh look stretchable jeans with a tie-up.",
     "Roadster Women Navy Blue Skinny Fit High-Rise Clean Look Stretchable Jeans", ["tie-up"]),
    ("A floral dress with a bow.", "Acme Women Floral Dress", ["bow"]),
    ("Grey sneakers with detail from Geox.", "Geox Men Grey Suede Leather Sneakers with Perforation Detail",
     ["with detail"]),
    ("Taupe sneakers with perforation detail from Geox.", "Geox Women Taupe Suede Leather Perforated Sneakers", []),
    # in the facts: pass
    ("A white dress with a tie-up.", "Acme Women White Dress with Tie-Up Detail", []),
    ("Black sandals with a backstrap.", "Beli Women Black Backstrap Sandals", []),
    ("A floral dress with a belt.", "Palm Tree Girls Floral Print A-Line Dress with Belt", []),
])
def test_has_a_part_outside_the_old_list(text, title, expected):
    assert find_mismatches(text, ctx_of(title=title)) == expected
    if expected:
        assert run_checks(["attributes"], text, ctx_of(title=title)) == "attribute_mismatch"


# ---------------------------------------------------------------- set 7: rare words, split repeats, a pattern word alone


@pytest.mark.parametrize("fragment", [
    "An adiabatic girls' blue dress",                        # a rare word for ADIVA
    "A large doll for dummies, big dogs, and pets.",         # a rare word, the facts' "Funny Bone" misread
    "Sea green solid woven solid cotton peplum top",        # a word said again one word later
    "A table placemat with orange and blue printed from SEJ",   # a pattern word with no noun
])
def test_set7_degenerate_on_corpus(fragment):
    assert check("degenerate", example(fragment)) == "degenerate"


def test_rare_words():
    assert rare_words("An adiabatic girls' blue dress.", ctx_of(title="ADIVA Girls Blue Fit and Flare Dress")) == [
        "adiabatic"]
    assert rare_words("A doll for dummies and peafowls.", ctx_of(title="Biggie Pet")) == ["dummies", "peafowls"]
    # ordinary words, their endings, the guard's catalog words, the facts and a fact word's family pass
    assert rare_words("Stylish eyewear and a ballerina tote, dedicated to comfort.", ctx_of(title="Acme")) == []
    assert rare_words("Taupe sneakers with perforation from Geox.",
                      ctx_of(title="Geox Women Taupe Suede Leather Perforated Sneakers")) == []
    assert rare_words("A peafowl print.", ctx_of(title="Acme Peafowl Print Scarf")) == []
    assert rare_words("Pointe de adiabatique.", replace(ctx_of(title="x"), locale="fr")) == []
    assert rare_words("A soft bracakelet.", ctx_of(title="x")) == []   # not English: ``non_words`` judges it


@pytest.mark.parametrize("text, expected", [
    ("Sea green solid woven solid cotton peplum top.", ["solid woven solid"]),
    ("A blue light blue shirt.", []),                       # colours and their modifiers
    ("They sit side by side.", []),                          # a preposition between
    ("Back closure back style.", []),                        # a spec list's part words
    ("Soft, soft and soft.", []),                            # clauses apart
])
def test_split_repeats(text, expected):
    assert split_repeats(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("A table placemat with orange and blue printed from SEJ.", ["printed"]),
    ("Blue striped from Roadster.", ["striped"]),
    ("A scarf woven from cotton.", []),                      # English
    ("The top is printed.", []),
    ("A printed top from SEJ.", []),
])
def test_dangling_adjectives(text, expected):
    assert dangling_adjectives(text) == expected


@pytest.mark.parametrize("text, title, expected", [
    # SmolLM2 on held-out Amazon toy rows (guard set 6's job, 2026-12-02), unedited
    ("An adorable cat toy designed to bring joy into your life.", "Folkmanis Red Fox Hand Puppet", ["cat"]),
    ("This teenage troll figure is a classic, fun, and colorful toy.",
     "Teenage Mutant Ninja Turtles Leonardo Basic Figure", ["troll"]),
    # a creature the facts name, in another of its words, passes
    ("A soft kitten plush for naps.", "Aurora Cat Plush", []),
    ("A dino toy that roars.", "Melissa & Doug Dinosaur Toy", []),
    ("A classic teddy for bedtime.", "Gund Bear Plush", []),
    # idioms and product words are not creatures
    ("Black kitten heels with a pointed toe.", "Acme Women Black Pumps", []),
    ("A cat-eye liner in one stroke; bear in mind it dries fast.", "Acme Liquid Eyeliner", []),
    ("A turtle neck sweater.", "Acme Men Black Sweater", []),
])
def test_creatures_the_facts_do_not_name(text, title, expected):
    assert creatures(text, fact_words(ctx_of(title=title))) == expected
    if expected:
        assert run_checks(["attributes.mismatch"], text, ctx_of(title=title)) == "attribute_mismatch"


def test_creatures_in_human_myntra_copy_are_rare():
    """Myntra's descriptions name an animal their title does not in 39 of 12,491 rows (0.3%): the
    Puma cat logo, owl key holders, bird prints: things the copywriter saw, which a model given the
    title alone would be inventing."""
    rows = _myntra()
    flagged = [r["product_name"] for r in rows if creatures(r["description"] or "", fact_words(_row_ctx(r)))]
    assert len(flagged) <= 0.005 * len(rows), flagged[:10]


@pytest.mark.parametrize("text, facts, expected", [
    ("A spooky costume for women.", {"title": "Rubie's Child Witch Costume"}, ["women"]),
    ("A fun costume for kids.", {"title": "Rubie's Child Witch Costume"}, []),
    ("Great for kids and adults.", {"title": "Air Hockey Table for Kids and Adults"}, []),
    ("A soft tee for men.", {"title": "Acme Men Tee"}, []),            # an adult row: the gender rule
    ("A frock for women.", {"title": "Acme Girls Frock", "gender": "Girls"}, ["women"]),
])
def test_a_kids_row_names_no_adult_audience(text, facts, expected):
    assert find_mismatches(text, ctx_of(**facts)) == expected


def test_a_child_title_outweighs_a_category_path():
    """SmolLM2, guard set 7's first Amazon job (2026-12-02), unedited: the category path says
    Women, the title says Child."""
    facts = {"title": "Medieval Princess Fuschia Child Costume",
             "category": "Clothing, Shoes & Jewelry | Costumes & Accessories | Women | Costumes & Cosplay Apparel"}
    text = "A medieval princess fuschia child costume for women. Includes dress, crown, and belt."
    assert find_mismatches(text, ctx_of(**facts)) == ["women"]
    assert find_mismatches("A medieval princess costume for girls.", ctx_of(**facts)) == []
