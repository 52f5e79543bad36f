"""Build the two word lists of the guardrails. Not run by the tests.

- ``pdgen_core/guardrails/words_en.txt``: ordinary English words, lower-case, one a line, which
  ``ungrounded_name`` lets through when capitalised at a sentence start, in a Title Case line or
  in a hashtag ("Perfect", "Crafted", "#SummerStyle");
- ``pdgen_core/guardrails/dictionary_en.txt.gz``: every other lower-case word of Webster's
  Second International (the public-domain ``web2`` list, as the MIT-licensed ``english-words``
  package ships it), so that ``degenerate`` can tell a misspelt or invented word ("bracakelet",
  "wavens") from a rare real one ("seesaw"), plus the lower-case words seen at least 3 times in
  the real catalogs and the women's clothing reviews (modern words: "skateboard", "cami"). Install that package anywhere, for example
  ``pip install --target /tmp/ew english-words==2.0.2``; it is not a dependency of pdgen.

    PYTHONPATH=/tmp/ew .venv/bin/python tests/corpus/make_common_words.py \
        --tokenizer /tmp/smol-hf/tokenizer.json

Sources: the whole-word lower-case tokens of SmolLM2's BPE vocabulary (a word the tokenizer
learned in lower case is one that web text writes in lower case), and the lower-case words that
occur at least 5 times in the real Myntra descriptions and Amazon ``about_product`` texts (catalog
words such as "kurta" or "dupatta"). Words that ``names.NAMES`` lists (places, nationalities,
retailers, platforms) are left out: they are names even where web text writes them in lower case.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "real"
MIN_CATALOG_COUNT = 5     # for words_en.txt
MIN_DICTIONARY_COUNT = 3  # for dictionary_en.txt.gz: modern words web2 lacks ("skateboard", "cami")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default="/tmp/smol-hf/tokenizer.json")
    ap.add_argument("--out", default=str(ROOT / "pdgen_core" / "guardrails" / "words_en.txt"))
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from pdgen_core.guardrails.names import NAMES

    vocab = json.loads(Path(args.tokenizer).read_text(encoding="utf-8"))["model"]["vocab"]
    words = {t[1:] for t in vocab if t.startswith("Ġ") and re.fullmatch(r"[a-z]{2,}", t[1:])}
    counts: Counter[str] = Counter()
    myntra = pq.read_table(REAL / "myntra-fashion-catalog" / "myntra_products_catalog.parquet")
    amazon = pq.read_table(next((REAL / "amazon-promptcloud-2020-sample").glob("*.parquet")))
    for text in myntra.column("description").to_pylist() + amazon.column("about_product").to_pylist():
        counts.update(re.findall(r"(?<![A-Za-z])[a-z]{2,}(?![A-Za-z])", text or ""))
    words |= {w for w, n in counts.items() if n >= MIN_CATALOG_COUNT}
    words -= {n.casefold() for n in NAMES}
    Path(args.out).write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
    print(f"{len(words)} words -> {args.out}")

    from english_words import get_english_words_set

    web2 = {w for w in get_english_words_set(["web2"]) if w.isalpha() and w.islower() and w.isascii()}
    reviews = pq.read_table(REAL / "womens-clothing-reviews" / "womens_clothing_ecommerce_reviews.parquet")
    for text in reviews.column("review_text").to_pylist() + amazon.column("product_name").to_pylist():
        counts.update(re.findall(r"(?<![A-Za-z])[a-z]{2,}(?![A-Za-z])", text or ""))
    web2 |= {w for w, n in counts.items() if n >= MIN_DICTIONARY_COUNT}
    rest = sorted(web2 - words - {n.casefold() for n in NAMES})
    out = Path(args.out).with_name("dictionary_en.txt.gz")
    # mtime=0: the same words give the same bytes.
    out.write_bytes(gzip.compress(("\n".join(rest) + "\n").encode(), mtime=0))
    print(f"{len(rest)} more words -> {out}")


if __name__ == "__main__":
    main()
