"""pdgen_core.text: the one invisible-character set, as every layer applies it."""

from pdgen_core.guardrails._text import normalise
from pdgen_core.hygiene import repair_text
from pdgen_core.stages.guard import strip_invisible as guard_strip
from pdgen_core.text import INVISIBLE, norm_sku, norm_text, strip_invisible

HIDDEN = ["\u200b", "\u202e", "\u2066", "\u206a", "\ufeff", "\u00ad", "\u061c", "\u180e",
          "\x00", "\x0b", "\x7f", "\ufff9", "\U000e0041"]


def test_inputs_outputs_and_guard_terms_drop_the_same_characters():
    for ch in HIDDEN:
        assert INVISIBLE.fullmatch(ch), repr(ch)
        text = f"fr{ch}ee"
        assert strip_invisible(text) == "free"
        assert guard_strip(text) == "free"
        assert norm_text(text) == "free"
        assert repair_text(text)[0] == "free"
        assert normalise(text) == "free"


def test_tabs_and_newlines_stay_in_generated_text():
    assert strip_invisible("a\tb\nc\r") == "a\tb\nc\r"


def test_norm_sku_reads_float_columns_as_integers():
    assert norm_sku(42.0) == "42" and norm_sku(float("nan")) is None and norm_sku(" A\u200b1 ") == "A1"
