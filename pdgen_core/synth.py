"""Synthetic catalog generator: brands, categories, attributes, prices in several currencies.

Vectorised with numpy (about a million rows per second per core) and written as several Parquet
files in parallel. ``bad_rows`` appends deliberately broken rows (null title, negative, NaN and huge
prices, duplicate skus, whitespace-only and over-long titles, NBSP) so that every run exercises
the rejects path. Deterministic for a given ``seed``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pdgen_core import storage

BRANDS = np.array([
    "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adatum", "Proseware", "Wingtip",
    "Coho", "Lucerne", "Alpine Ridge", "Blue Yonder", "Trey", "Woodgrove", "Margie", "Humongous",
    "Wide World", "Southridge", "Fourth Coffee", "Graphic Design Co",
])
CATEGORIES = np.array([
    "t-shirt", "jacket", "sneakers", "backpack", "water bottle", "desk lamp", "yoga mat", "watch",
    "headphones", "kettle", "scarf", "sunglasses", "wallet", "hoodie", "tent", "blender",
])
COLORS = np.array(["black", "white", "navy", "red", "green", "grey", "olive", "beige", "blue", "pink"])
MATERIALS = np.array([
    "cotton", "recycled polyester", "leather", "stainless steel", "bamboo", "wool", "nylon",
    "aluminium", "canvas", "ceramic",
])
GENDERS = np.array(["women", "men", "unisex"])
ADJECTIVES = np.array([
    "lightweight", "durable", "classic", "modern", "compact", "breathable", "versatile", "soft",
    "sturdy", "minimal",
])
USES = np.array([
    "everyday wear", "travel", "the gym", "the office", "weekend trips", "outdoor adventures",
    "gifting", "home use",
])
# Fixed exchange rates keep the three price columns consistent with each other.
FX = {"usd": 1.0, "eur": 0.92, "inr": 83.0}

OPENERS = np.array([
    "This {adj} {color} {cat} from {brand} is made of {mat}.",
    "Meet the {brand} {cat}: {adj}, {color} and made of {mat}.",
    "{brand} brings a {adj} {cat} in {color} {mat}.",
    "A {adj} {color} {cat} by {brand}, crafted from {mat}.",
])
CLOSERS = np.array([
    "It is a great choice for {use}.",
    "Ideal for {use}.",
    "Made for {use} and built to last.",
    "Perfect for {use}, season after season.",
])


def _fmt(templates: np.ndarray, idx: np.ndarray, **cols: np.ndarray) -> list[str]:
    return [templates[i].format(**{k: v[j] for k, v in cols.items()}) for j, i in enumerate(idx)]


def make_catalog(rows: int, seed: int = 0, start: int = 0, bad_rows: int = 0) -> pa.Table:
    """``rows`` good products (sku ``SKU-<start..>``) plus ``bad_rows`` broken ones."""
    rng = np.random.default_rng([seed, start])
    n = rows
    brand = BRANDS[rng.integers(0, len(BRANDS), n)]
    cat = CATEGORIES[rng.integers(0, len(CATEGORIES), n)]
    color = COLORS[rng.integers(0, len(COLORS), n)]
    mat = MATERIALS[rng.integers(0, len(MATERIALS), n)]
    gender = GENDERS[rng.integers(0, len(GENDERS), n)]
    adj = ADJECTIVES[rng.integers(0, len(ADJECTIVES), n)]
    use = USES[rng.integers(0, len(USES), n)]
    usd = np.round(np.exp(rng.normal(3.4, 0.8, n)), 2).clip(1.0, 5000.0)
    sku = np.char.add("SKU-", np.char.zfill(np.arange(start, start + n).astype(str), 8))
    title = np.char.add(np.char.add(np.char.add(brand, " "), np.char.add(np.char.capitalize(gender), " ")),
                        np.char.add(np.char.add(np.char.capitalize(color), " "), np.char.capitalize(cat)))
    desc = [
        f"{a} {b}"
        for a, b in zip(
            _fmt(OPENERS, rng.integers(0, len(OPENERS), n), adj=adj, color=color, cat=cat, brand=brand, mat=mat),
            _fmt(CLOSERS, rng.integers(0, len(CLOSERS), n), use=use),
        )
    ]
    cols = {
        "product_id": sku.astype(object),
        "product_name": title.astype(object),
        "brand": brand.astype(object),
        "category": cat.astype(object),
        "color": color.astype(object),
        "material": mat.astype(object),
        "gender": gender.astype(object),
        "price_usd": usd,
        "price_eur": np.round(usd * FX["eur"], 2),
        "price_inr": np.round(usd * FX["inr"], 0),
        "description": np.array(desc, dtype=object),
    }
    table = pa.table(cols)
    if bad_rows:
        table = pa.concat_tables([table, _bad_rows(bad_rows, start + n, table.slice(0, 1))])
    return table


def _bad_rows(k: int, start: int, template: pa.Table) -> pa.Table:
    """``k`` broken rows cycling through the kinds of dirt validation must catch."""
    base = template.to_pylist()[0] if template.num_rows else {}
    kinds = [
        {"product_name": None},                                # missing title
        {"price_usd": -5.0, "price_eur": -4.6, "price_inr": -415.0},  # negative price
        {"price_usd": float("nan"), "price_eur": float("nan"), "price_inr": float("nan")},
        {"product_name": "   \u00a0  "},                       # whitespace-only title
        {"product_name": "Mega " * 400},                       # over the title cap
        {"product_id": None},                                  # missing sku
        {"product_id": base.get("product_id", "SKU-00000000")},  # duplicate sku
        {"price_usd": float("inf"), "price_eur": float("inf"), "price_inr": float("inf")},
    ]
    out = []
    for i in range(k):
        row = dict(base)
        row["product_id"] = f"SKU-BAD-{start + i:06d}"
        row["product_name"] = f"Broken\u00a0row {i}"
        row.update(kinds[i % len(kinds)])
        out.append(row)
    return pa.Table.from_pylist(out, schema=template.schema)


def write_catalog(uri: str, rows: int, files: int = 4, seed: int = 0, bad_rows: int = 0,
                  workers: int = 4) -> list[str]:
    """Write ``rows`` products as ``files`` Parquet files under ``uri`` in parallel; returns paths.

    Bad rows go into the last file. A single ``.parquet`` URI writes one file.
    """
    loc = storage.resolve(uri)
    if uri.endswith(".parquet"):
        files = 1
    files = max(1, min(files, rows or 1))
    bounds = np.linspace(0, rows, files + 1).astype(int)

    def one(i: int) -> str:
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        t = make_catalog(hi - lo, seed=seed, start=lo, bad_rows=bad_rows if i == files - 1 else 0)
        target = loc if files == 1 and uri.endswith(".parquet") else loc.child(f"part-{i:05d}.parquet")
        if not target.is_s3:
            target.fs.create_dir(target.path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(t, target.path, filesystem=target.fs, compression="zstd")
        return target.uri

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(files)))


def corpus(rows: int = 20000, seed: int = 1) -> list[str]:
    """Catalog text for training the tiny model's tokenizer."""
    t = make_catalog(rows, seed=seed)
    return t.column("product_name").to_pylist() + t.column("description").to_pylist()


REVIEW_OPENERS = np.array([
    "Really happy with this {cat}.", "The {cat} arrived quickly.", "Not sure about this {cat}.",
    "Bought this {cat} as a gift.", "Second {cat} from {brand} I own.", "Disappointed with the {cat}.",
])
REVIEW_DETAILS = np.array([
    "The {color} colour looks great.", "Quality of the {mat} feels solid.", "Sizing runs a bit small.",
    "It was cheaper than expected.", "The stitching came loose after a week.", "Works well for {use}.",
])


def make_reviews(catalog: pa.Table, per_sku: tuple[int, int] = (0, 6), seed: int = 0) -> pa.Table:
    """Synthetic customer reviews for a synthetic catalog: 0-5 per sku, ratings 1-5."""
    rng = np.random.default_rng([seed, 7])
    rows = []
    for r in catalog.to_pylist():
        if not r["product_id"] or not r["product_name"]:
            continue
        for i in range(int(rng.integers(*per_sku))):
            kw = {"cat": r["category"], "brand": r["brand"], "color": r["color"], "mat": r["material"],
                  "use": USES[rng.integers(0, len(USES))]}
            text = (REVIEW_OPENERS[rng.integers(0, len(REVIEW_OPENERS))].format(**kw) + " "
                    + REVIEW_DETAILS[rng.integers(0, len(REVIEW_DETAILS))].format(**kw))
            rows.append({"product_id": r["product_id"], "review_text": text,
                         "rating": int(rng.integers(1, 6))})
    return pa.Table.from_pylist(rows, schema=pa.schema(
        [("product_id", pa.string()), ("review_text", pa.string()), ("rating", pa.int8())]))


def write_reviews(uri: str, catalog: pa.Table, seed: int = 0) -> str:
    loc = storage.resolve(uri)
    target = loc if uri.endswith(".parquet") else loc.child("reviews.parquet")
    if not target.is_s3:
        target.fs.create_dir(target.path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(make_reviews(catalog, seed=seed), target.path, filesystem=target.fs)
    return target.uri
