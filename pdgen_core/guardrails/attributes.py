"""Attributes that contradict the row, or that it does not give: ``attribute_mismatch``.

SmolLM2 recolours, re-materials and re-genders products: "a leather oxford with a bright red
finish" (tan brown oxfords), "a red regular fit shorts" (black & grey), "a stretchable canvas top"
(cropped jeans), "a red beige ... bag" (a bra), "for men" (a Women row), "plush toys made of
gold". A page that calls copper steel is the failure that got AI listings pulled. So, for the
four small vocabularies below, a word in the text must be grounded in the facts (any field:
title, colour, material, gender, category, attributes):

- colour: the word, or a word it may stand for (``SHADES``: "blue" for navy), is in the facts;
- material: the word, or one of its forms ("wood" for wooden), is in the facts;
- gender: checked only when the facts state one; the text's audience words must fit it
  ("men" for a Women row fails; "kids" for Boys passes);
- product type: checked only when the title names a type; every type the text names must be of
  a kind the facts name ("sneakers" for casual shoes passes, "bag" for a bra fails, "toy" for
  boxers fails);
- claim: a feature a shopper relies on ("handmade", "waterproof", "organic", "luxury") is in
  the facts; so is a superlative ("the finest", "premium", "top-of-the-line"), a fit promise
  ("for men of all sizes") and a theme ("a storybook theme"; "princess-themed" for a princess
  sash passes);
- opposite: the text does not give the opposite of what the facts say ("ultra-thin" for a
  Super Thick toploader); ``OPPOSITES`` holds pairs with no second sense;
- a type word put after another as its head ("a kurta jacket" for a kurta) is in the facts;
- subtype (set 6): within a kind, the text's type is the one the facts name or one they allow
  ("boots" for boat shoes, "heeled sneakers" for heels, "joggers" for jeans fail; "sneakers" for
  casual shoes passes): ``SUBTYPES``, ``GENERIC_TYPES``, ``BROADER``;
- construction (set 6): how the piece is made ("knitted" jeans, a "lace-up" necklace) is in the
  facts (``CONSTRUCTION``);
- creature (set 7): an animal, creature or figure the text names ("An adorable cat toy" for a
  fox doll, "a teenage troll figure" for a Ninja Turtle) is one the facts name, in any of its
  words (``CREATURES``: "kitten" for Cat, "dino" for Dinosaur, "teddy" for Bear); idioms are
  not judged ("kitten heels", "cat-eye", "butterfly clasp", "turtle neck", "bear in mind", "the
  saree bears");
- audience of a kids' row (set 7): when the title (or else the facts) speaks of children only
  ("Child", "Kids", "Toddler") and no gender field is given, the text names no adult audience
  ("a child costume for women", though Amazon's category path files it under Women).

``check_product_named`` (``attributes.product``) asks the converse for product copy: when the
title names a type, the text names the product by some type word of that kind ("nail-polishing
product" for a watch, "men's sportswear" for a checked shirt do not). FAQs and review digests
run ``attributes.mismatch`` alone: an answer may rightly say "it" throughout.

Words in the facts are fine however they are used. The vocabularies are kept small and explicit
on purpose: a word that is not in them is never judged here.
"""

from __future__ import annotations

import re

from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.facts import fact_tokens

COLOURS = frozenset("""
red blue navy black white grey gray green yellow pink purple orange brown beige tan maroon olive
cream gold golden silver teal turquoise khaki burgundy mustard peach lavender magenta charcoal
rust coral mauve violet indigo nude fuchsia lime aqua copper bronze ivory
""".split())
# A colour word the text uses -> facts words that ground it besides itself.
SHADES = {
    "blue": {"navy", "teal", "turquoise", "indigo", "aqua"}, "grey": {"gray", "charcoal"},
    "gray": {"grey", "charcoal"}, "gold": {"golden"}, "golden": {"gold"},
    "red": {"maroon", "burgundy"}, "purple": {"violet", "lavender", "mauve"},
    "pink": {"fuchsia", "magenta", "peach"}, "green": {"olive", "teal", "lime"},
    "brown": {"tan", "khaki", "coffee"}, "white": {"ivory", "cream"},
}
MATERIALS = frozenset("""
cotton leather silk wool woollen linen denim polyester nylon steel stainless copper brass aluminium
aluminum wood wooden bamboo plastic glass ceramic rubber canvas suede velvet satin chiffon rayon
viscose metal iron porcelain fleece cashmere jute mesh spandex lycra acrylic resin marble
silicone georgette crepe chambray corduroy titanium plush lace synthetic
""".split())
FORMS = {"wood": {"wooden"}, "wooden": {"wood"}, "wool": {"woollen", "woolen"}, "woollen": {"wool"},
         "aluminium": {"aluminum"}, "aluminum": {"aluminium"}, "steel": {"stainless"},
         "stainless": {"steel"}, "spandex": {"lycra", "elastane"}, "lycra": {"spandex", "elastane"},
         # set 8: "A pair of brown solid leather formal derbys ... Synthetic upper." (LoRA v5)
         "synthetic": {"pu", "faux", "polyurethane", "polyester", "nylon", "acrylic"},
         "lace": {"lace-up", "lace-ups", "laces", "laced"}}
# How the fabric or piece is made (set 6): "Blue knitted mid-rise jeans", "woven blue-toned knitted
# jacket", "Silver-plated lace-up necklace" (SmolLM2 + LoRA v4 on held-out Myntra rows; the titles
# say none of it). A word here must be in the facts, or one of its grounds (a sweater is knitted).
CONSTRUCTION = {
    "knitted": {"knit", "knitted", "knitwear", "sweater", "sweaters", "cardigan", "cardigans", "pullover",
                "jumper", "beanie", "crochet"},
    "knit": {"knit", "knitted", "knitwear", "sweater", "sweaters", "cardigan", "cardigans", "pullover", "jumper", "beanie"},
    "crocheted": {"crochet", "crocheted"}, "crochet": {"crochet", "crocheted"},
    "quilted": {"quilted", "quilt"}, "embroidered": {"embroidered", "embroidery"},
    "sequinned": {"sequinned", "sequined", "sequins", "sequin"}, "sequined": {"sequinned", "sequined", "sequins", "sequin"},
    "beaded": {"beaded", "beads", "bead"}, "lace-up": {"lace-up", "lace-ups", "laces", "lace", "laced"},
    # set 8: "Black solid playsuit with embellished detail", "peplum top with tie-up detail" (LoRA v5)
    "embellished": {"embellished", "embellishment", "embellishments", "sequinned", "sequined", "beaded",
                    "embroidered", "stone-studded", "studded", "stonestudded"},
    "tie-up": {"tie-up", "tieup", "tie", "ties", "tie-ups"},
}
# The pattern a text gives, each with the facts words that ground it (set 8). SmolLM2 + LoRA v5 on
# held-out Myntra rows fills the slot from the training copy: "Grey solid sweater with printed
# detail" for a solid sweater, "Red and off-white checked casual shirt" for a dyed one, "beige
# checked strap" on a solid bra. "solid" is left out: Myntra's copy calls any plain piece solid.
PATTERNS = {
    "printed": {"printed", "print", "prints"}, "print": {"printed", "print", "prints"},
    "checked": {"checked", "check", "checks", "checkered", "chequered", "plaid", "tartan", "gingham"},
    "checkered": {"checked", "check", "checks", "checkered", "chequered", "plaid", "tartan", "gingham"},
    "striped": {"striped", "stripe", "stripes", "pinstriped", "pinstripe"},
    "floral": {"floral", "flower", "flowers", "flowered", "botanical"},
    "geometric": {"geometric"}, "camouflage": {"camouflage", "camo"}, "polka": {"polka", "dots", "dot"},
    "paisley": {"paisley"}, "abstract": {"abstract"}, "houndstooth": {"houndstooth"},
    "colourblocked": {"colourblocked", "colorblocked", "colourblock", "colorblock"},
    "colorblocked": {"colourblocked", "colorblocked", "colourblock", "colorblock"},
}
# Claims of make, quality or certification; "luxury" is how SmolLM2 describes a ₹599 kurta.
CLAIMS = frozenset("""
handmade handcrafted hand-made hand-crafted handwoven hand-woven waterproof water-resistant
water-repellent organic sustainable eco-friendly vegan recycled antimicrobial hypoallergenic
licensed certified award-winning bestseller bestselling luxury luxurious wireless rechargeable
sustainability eco
""".split())
# Claims written as phrases, each with the facts words that ground it: unsupported superlatives
# ("the finest gold earrings", "a premium option", "a top-of-the-line puzzle"), fit promises
# ("perfect for men of all sizes") and themes ("a puzzle with a storybook theme" for a
# general-store scene, "a building with a beach theme" for bath blocks; a theme the facts name,
# "princess-themed", passes: see _THEMED).
CLAIM_PHRASES = (
    (re.compile(r"\b(?:the|world'?s|our|its|their|your)\s+(?:very\s+)?best\b|\bbest[- ]in[- ]class\b"), {"best"}),
    (re.compile(r"\bfinest\b"), {"finest", "fine"}),
    (re.compile(r"\bultimate\b"), {"ultimate"}),
    (re.compile(r"\bpremium\b"), {"premium"}),
    (re.compile(r"\btop[- ]of[- ]the[- ]line\b|\btop[- ]notch\b|\btop[- ]rated\b|\bworld[- ]class\b"), {"top"}),
    (re.compile(r"\bun(?:matched|beatable|rivall?ed|paralleled)\b|\bnumber one\b|#1\b"), set()),
    # records nobody gave: "the world's largest manufacturer of power sockets", "the most expensive
    # dragonball ever created" (SmolLM2 on held-out Amazon rows, 2026-12-01)
    (re.compile(r"\bworld'?s\s+(?:largest|biggest|first|leading|most|best|smallest|oldest)\b|"
                r"\b(?:most|least)\s+[a-z-]+\s+[a-z-]*\s*ever\b|\bever\s+(?:created|made|built|sold)\b"), {"ever", "world"}),
    (re.compile(r"\b(?:all|any|every)\s+sizes?\b|\b(?:variety|range)\s+of\s+sizes\b"), {"size", "sizes"}),
)
_THEMED = re.compile(r"\b([a-z]+)(?:[- ]themed\b|\s+theme\b)")
# Opposites: a text word whose opposite the facts give, and not the word itself ("ultra-thin"
# for a "Super Thick" toploader). Kept to pairs without a second sense ("light" is a shade,
# "short" a sleeve).
OPPOSITES = {"thin": {"thick"}, "thick": {"thin", "slim"}, "narrow": {"wide"}, "wide": {"narrow"},
             "matte": {"glossy", "gloss"}, "glossy": {"matte"}, "lightweight": {"heavyweight", "heavy"},
             "heavyweight": {"lightweight"}, "sleeveless": {"sleeve", "sleeves"}}
# Construction details: what a garment or shoe has (a collar, sleeves, a hem, a closure, pockets,
# a rise, padding, a sole; not the fit, which titles mostly give). Catalog copy is full of them ("has a spread collar, long
# sleeves, button placket, curved hem, and side slits"), because the person who wrote it saw the
# product; a model given the title alone invents them, and a LoRA adapter trained on that copy
# learns to (SmolLM2 + LoRA, held-out Myntra rows, 2026-12-01: "Burgundy woven knitted ankle jeans
# from SPYKAR, has a round neck, long sleeves, button placket", "Platinum eau de toilette from
# AIGNER, has a round neck, three-quarter sleeves"). A detail passes when every word of it is in
# the facts ("polo collar" on a "Polo Collar T-shirt" row).
_N = r"(?:a|an|one|two|three|four|five|six|\d+)"
DETAIL_PHRASES = (
    re.compile(r"\b(?:spread|mandarin|button-down|polo|shirt|shawl|band|notched|cutaway|club|wing|peter pan|"
               r"stand|classic|ribbed|high|round|v-neck|johnny)\s+collar\b"),
    re.compile(r"\b(?:round|v|crew|boat|scoop|square|high|mock|cowl|keyhole|sweetheart|halter|u|henley|"
               r"turtle|polo|shoulder)[- ]neck(?:line)?\b"),
    re.compile(r"\b(?:long|short|three-quarter|3/4th|3/4|cap|puff|puffed|bell|flared|full|half|roll-up|"
               r"extended|raglan|flutter|elbow-length|drop-shoulder)\s+sleeves?\b|\bsleeveless\b"),
    re.compile(r"\b(?:curved|straight|flared|asymmetric|high-low|raw|scalloped|tiered|ruffled|rounded|"
               r"ribbed|vented|double-vented)\s+hem(?:line)?\b"),
    re.compile(r"\bbutton placket\b|\b(?:full|half)\s+button placket\b|\b(?:zip|zipper|button|buttoned|"
               r"hook-and-eye|hook-and-bar|drawstring|snap|velcro|lace-up|buckle|slip-on|tie-up)\s+"
               r"(?:closure|closures|fastening|fly)\b|\bzip fly\b"),
    re.compile(rf"\b{_N}\s+(?:patch\s+|welt\s+|slant\s+|side\s+|zip\s+|chest\s+|kangaroo\s+)?pockets?\b|"
               r"\b(?:patch|welt|slant|kangaroo|chest)\s+pockets?\b|\b\d+-pocket\b"),
    re.compile(r"\bside slits?\b|\b(?:low|mid|high)[- ]rise\b|\bbelt loops\b|\b(?:elasticated|elastic)\s+waist(?:band)?\b"),
    re.compile(r"\b(?:lightly\s+|non-)?padded\b|\bunder-?wired?\b|\bnon-wired\b|\b(?:attached|full|half)\s+lining\b"),
    re.compile(r"\bcushioned footbed\b|\b(?:textured|patterned|rubber|tpr|pu)\s+(?:out)?sole\b"),
)
_DETAIL_FILLER = frozenset(("a", "an", "one", "two", "three", "four", "five", "six", "full", "half"))
# What a product "has": the slot after "has a" that catalog copy fills with what its writer saw.
# An adapter trained on that copy, its listed details cut (``finetune.data.ground_details``),
# still fills the slot, with whatever detail it knows: "casual shirt from HIGHLANDER, has a tie-up
# collar", "open dry bin ... has a double-layered lid", "cufflinks ... has a hood", "ring ... has a
# round shape" (SmolLM2 + LoRA v3, 100 held-out Myntra rows, 2026-12-01: 55 of its 87 accepted
# texts). A part the product has (``PARTS``) must be in the facts with every word that qualifies
# it; a generic noun (``GENERIC_PARTS``: a design, a detail, a shape) may be qualified by praise
# (``PRAISE``: "has a sleek design") but any other qualifier must be in the facts ("has a tie-up
# detail" for a dress whose title gives no tie-up fails).
PARTS = frozenset("""
collar collars hood hoods lid lids heel heels upper uppers waist waistband neck neckline sleeve
sleeves hem hemline placket buckle buckles pouch pouches strap straps sole soles outsole toe zip
zipper zippers pocket pockets lining closure button buttons trim trims dial handle handles
compartment compartments wheels cuffs cuff yoke frame lens lenses drawstring tassels fringe
backstrap backstraps back front tie-up tie-ups bow bows knot ruffle ruffles frill frills pleat pleats
slit slits cut-out cut-outs cutout cutouts panel panels insole footbed laces lace-up lace-ups
embroidery applique sequins beads studs clasp clasps hook hooks chain chains logo peplum flap flaps
""".split())
GENERIC_PARTS = frozenset("detail details detailing design styling shape fit finish look style".split())
PRAISE = frozenset("""
sleek stylish modern classic timeless elegant simple minimal minimalist clean versatile chic
trendy beautiful lovely great perfect unique flattering comfortable comfy relaxed smart neat
contemporary fashionable attractive refined polished subtle bold striking eye-catching cool
fresh fun graceful sophisticated charming
""".split())
_HAS = re.compile(r"\b(?:(?:has|have|having|features|featuring|comes with)\s+(?:(?:a|an|one|two)\s+)?|with\s+(?:a|an)\s+)"
                  r"(?:pair\s+of\s+)?((?:[a-z]+(?:-[a-z]+)*\s+){0,3}?([a-z]+(?:-[a-z]+)?))\b(?=\s*(?:[,.;:!?)]|$|\s(?:and|that|to|for|in|on|with|from)\b))")


def _grounded(word: str, facts: set[str]) -> bool:
    """``word`` is in the facts, alone or as its plural, singular or -ed form ("hood": Hooded)."""
    return any(w in facts for w in (word, word.rstrip("s"), word + "s", word + "ed", word + "d",
                                    word.replace("-", "")))


def _has_details(low: str, facts: set[str]) -> list[str]:
    """The "has a <detail>" phrases of ``low`` whose part, or a qualifier of it, the facts lack."""
    bad = []
    for m in _HAS.finditer(low):
        phrase, noun = m.group(1), m.group(2)
        if noun not in PARTS and noun not in GENERIC_PARTS:
            continue
        qualifiers = [w for w in re.split(r"\s+", phrase)[:-1] if w not in _DETAIL_FILLER]
        if noun in PARTS and not _grounded(noun, facts):
            bad.append(phrase)
        elif any(not _grounded(w, facts) and w not in PRAISE for w in qualifiers):
            bad.append(phrase)
    return bad


# A detail named and not said: "Grey sneakers with detail from Geox" (the title's "Perforation
# Detail", its qualifier dropped; LoRA v4, set 6).
_BARE_DETAIL = re.compile(r"\b(?:with|has|have|features|featuring)\s+(?:detail|details|detailing)\b"
                          r"(?=\s*(?:[,.;:!?)]|$|\s(?:and|from|for|in|on)\b))")


def ungrounded_details(text: str, facts: set[str]) -> list[str]:
    """The construction details of ``text`` (``DETAIL_PHRASES`` and "has a <part>") with a word
    the facts lack."""
    low = _split_hashtags(normalise(text)).casefold()
    bad = []
    for pat in DETAIL_PHRASES:
        for m in pat.finditer(low):
            if m.group() == "sleeveless" and {"sleeve", "sleeves"} & facts:
                continue   # an opposite of the row's sleeves: ``_opposites`` names it
            words = [w for w in re.split(r"[\s-]+", m.group()) if w and w not in _DETAIL_FILLER and not w.isdigit()]
            if not all(w in facts or w.rstrip("s") in facts or w + "s" in facts for w in words):
                bad.append(m.group())
    bad += [m.group() for m in _BARE_DETAIL.finditer(low)]
    return bad + [p for p in _has_details(low, facts) if not any(p in b or b in p for b in bad)]


# Animals, creatures and figures (set 7): SmolLM2 on held-out Amazon toy rows renames them ("An
# adorable cat toy designed to bring joy into your life." for a fox doll, "This teenage troll
# figure is a classic" for a Ninja Turtle, 2026-12-02). Each group's words ground each other.
CREATURES = {w: g for g, words in {
    "cat": "cat cats kitten kittens kitty kitties feline", "dog": "dog dogs puppy puppies pup pups doggy canine",
    "fox": "fox foxes", "bear": "bear teddy", "rabbit": "rabbit rabbits bunny bunnies hare",
    "dinosaur": "dinosaur dinosaurs dino dinos rex triceratops", "unicorn": "unicorn unicorns",
    "dragon": "dragon dragons", "horse": "horse horses pony ponies", "elephant": "elephant elephants",
    "lion": "lion lions", "tiger": "tiger tigers", "monkey": "monkey monkeys", "giraffe": "giraffe giraffes",
    "zebra": "zebra zebras", "owl": "owl owls", "penguin": "penguin penguins", "duck": "duck ducks duckling",
    "pig": "pig pigs piggy", "cow": "cow cows", "sheep": "sheep lamb lambs", "frog": "frog frogs",
    "turtle": "turtle turtles tortoise", "shark": "shark sharks", "whale": "whale whales",
    "dolphin": "dolphin dolphins", "bird": "bird birds", "butterfly": "butterfly butterflies",
    "sloth": "sloth sloths", "panda": "panda pandas", "koala": "koala koalas", "wolf": "wolf wolves",
    "snake": "snake snakes", "spider": "spider spiders", "deer": "deer reindeer", "mouse": "mouse mice",
    "octopus": "octopus", "troll": "troll trolls", "fairy": "fairy fairies", "mermaid": "mermaid mermaids",
    "robot": "robot robots", "pirate": "pirate pirates", "ninja": "ninja ninjas",
    "superhero": "superhero superheroes", "princess": "princess princesses", "wizard": "wizard wizards",
    "zombie": "zombie zombies", "alien": "alien aliens", "monster": "monster monsters",
}.items() for w in words.split()}
# Creature words that are idioms or product words here ("kitten heels", "cat-eye liner", "a
# butterfly clasp", "bear in mind"): Myntra's human copy names no animal in 0.8% of rows whose
# titles name none, nearly all of them these.
_CREATURE_IDIOM = re.compile(r"\bkitten[- ]heel|\bcat[- ]eye|\bbutterfly\s+(?:clasp|buckle|closure|lock|sleeve)|"
                             r"\bturtle[- ]?neck|\bbear\s+in\s+mind|\bbull(?:dog)?\s+clip|\bmouse\s*pad")
_KIDS = frozenset("kids kid child children childrens toddler toddlers baby babies infant infants boys girls "
                  "junior juniors".split())
_ADULTS = frozenset("men women man woman adults adult ladies lady unisex mens womens teens teen".split())
_ADULT_AUDIENCE = frozenset("men women man woman ladies lady gentlemen mens womens adults adult".split())


def creatures(text: str, facts: set[str]) -> list[str]:
    """The animals, creatures and figures of ``text`` that the facts do not name."""
    named = {CREATURES[w] for w in facts if w in CREATURES}
    low = _CREATURE_IDIOM.sub(" ", _split_hashtags(normalise(text)).casefold())
    return [w for w in _words(low) if w in CREATURES and CREATURES[w] not in named and w not in facts]


def _title_words(ctx: GuardContext) -> set[str]:
    return set(_words(ctx.title or str(ctx.fields.get("title") or "")))


def _kids_only(words: set[str]) -> bool:
    return bool(words & _KIDS) and not words & _ADULTS


def _adult_audience(words: list[str], ctx: GuardContext, facts: set[str]) -> list[str]:
    """A kids' row's adult audience words: when the title speaks of children only ("Medieval
    Princess Fuschia Child Costume"), "for women" contradicts it, even where a category path
    files the costume under Women (Amazon's "Costumes & Accessories | Women | ..."): the title
    says what the product is; elsewhere the words must be in the facts."""
    title = _title_words(ctx)
    grounds = title if _kids_only(title) else facts if _kids_only(facts) else None
    return [] if grounds is None else [w for w in words if w in _ADULT_AUDIENCE and w not in grounds]


# Audience words -> the genders they fit.
_ADULT_M, _ADULT_W = {"men", "unisex"}, {"women", "unisex"}
AUDIENCE = {
    "men": _ADULT_M, "man": _ADULT_M, "mens": _ADULT_M, "male": _ADULT_M, "gentlemen": _ADULT_M,
    "him": _ADULT_M | {"boys"}, "women": _ADULT_W, "woman": _ADULT_W, "womens": _ADULT_W,
    "ladies": _ADULT_W, "lady": _ADULT_W, "female": _ADULT_W, "her": _ADULT_W | {"girls"},
    "boys": {"boys", "unisex kids"}, "boy": {"boys", "unisex kids"},
    "girls": {"girls", "unisex kids"}, "girl": {"girls", "unisex kids"},
}
GENDERS = {"men": "men", "women": "women", "boys": "boys", "girls": "girls", "unisex": "unisex",
           "unisex kids": "unisex kids", "male": "men", "female": "women"}
# Product type words -> kind. "top" only as a noun after an article or adjective (not "on the
# top"): see _type_words.
TYPES = {
    **dict.fromkeys("bag bags backpack backpacks handbag handbags clutch tote wallet wallets trolley "
                    "luggage suitcase duffle duffel sling".split(), "bag"),
    **dict.fromkeys("shirt shirts tshirt tee tees top tops blouse kurta kurtas kurti kurtis tunic "
                    "sweater sweatshirt hoodie jacket jackets coat cardigan polo pullover".split(), "top"),
    **dict.fromkeys("jeans trousers trouser pants leggings joggers chinos jeggings palazzos pyjamas".split(),
                    "bottom"),
    "shorts": "shorts", "skirt": "skirt", "skirts": "skirt",
    **dict.fromkeys("dress dresses gown saree sari lehenga jumpsuit playsuit".split(), "dress"),
    "suit": "suit", "blazer": "suit",
    **dict.fromkeys("shoes shoe sneaker sandal heel boot oxford loafer slipper flats "
                    "flipflops derbys brogues moccasins flatforms pumps ballerinas sliders trainers "
                    "stilettos wedges".split(), "footwear"),
    **dict.fromkeys("bra briefs boxer panties lingerie trunk camisole".split(), "innerwear"),
    **dict.fromkeys("perfume fragrance deodorant cologne lipstick".split(), "beauty"),
    **dict.fromkeys("sunglasses eyewear watch wristwatch timepiece belt cap hat scarf socks earrings necklace bracelet "
                    "accessory accessories jewellery jewelry".split(), "accessory"),
    **dict.fromkeys("toy toys game games puzzle doll dolls plush teddy".split(), "toy"),
    **dict.fromkeys("curtain towel mug cup bedsheet pillow cushion rug runner".split(), "home"),
    **dict.fromkeys("snack snacks food".split(), "food"),
}
# Kinds that one garment may be called by: a kurta is sold as a top and a tunic dress as either.
# (A set such as "kurta with trousers" names both kinds in its title.)
# (kind the facts name, kind the text uses): a blazer may be called a jacket, a shirt not a suit.
_COMPATIBLE = {("top", "dress"), ("dress", "top"), ("suit", "top")}
# Words whose plural is a type but which are ordinary words alone ("short legs", "a flat base").
_NOT_SINGULAR = frozenset({"short", "flat", "pump", "brief", "glass"})
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")
_HASHTAG = re.compile(r"#(\w+)")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# "top" as a garment: after a word that may qualify one ("a grey top", "this peplum top") and
# before the end of its phrase, not "on the top", "table top" or "top-notch".
_TOP_NOUN = re.compile(r"\b(?!(?:on|of|at|to|table|desk|counter|bench|roof)\s)(?:[a-z]+-)?[a-z]+\s+tops?\b(?!-)"
                       r"(?=\s*(?:[,.;:!?)]|$|\s(?:for|from|made|by|is|are|with|in|that|and|you|to)\b))")
# In a title a type word is the product's when it ends the title or a part of it ("... Printed
# Top", "Kurta with Trousers"), not "Table Top Air Hockey".
_TITLE_TOP = re.compile(r"\btops?\b(?=\s*(?:$|[-,|(/&]|\s(?:for|with|and)\b))")
# "suit" as a garment ("a regular suit for men", "suit made by"), not the verb ("suits any
# occasion", "to suit you").
_SUIT_NOUN = re.compile(
    r"(?<!\bto )(?<!\bwill )(?<!\bwould )(?<!\bit )(?<!\bthat )(?<!\bwhich )\bsuits?\b"
    r"(?=\s*(?:[,.;!]|$|\s(?:for|made|is|are|by|from|with|in)\b))")


# Types within a kind (set 6). The kind check lets any footwear word stand for any footwear; a
# fine-tuned adapter swaps types within the kind instead: "Black solid leather boots" for Geox
# boat shoes, "brown printed heeled sneakers" for Metro heels (SmolLM2 + LoRA v4, 100 held-out
# Myntra rows, 2026-12-01). A type word of the text names a subtype (``SUBTYPES``); when the facts
# name a subtype of the same kind, the text's must be one they allow: the same one, or one of
# ``BROADER`` (a sweater may be called by its broader name, a cardigan not by a narrower one).
# Generic words (``GENERIC_TYPES``: "shoes", "top", "bag") say nothing and always pass, and a row
# whose facts name only a generic word ("Casual Shoes") admits any subtype ("sneakers"): the check
# judges a swap, never a refinement it cannot know is wrong. Two-word subtypes ("boat shoes",
# "track pants") are read from the phrase (``_COMPOUND_TYPES``).
SUBTYPES = {
    **dict.fromkeys("sneaker sneakers trainers trainer".split(), "sneaker"),
    **dict.fromkeys("heels pumps stilettos wedges".split(), "heel"),   # "a stacked heel" is a part
    **dict.fromkeys("boot boots".split(), "boot"),
    **dict.fromkeys("sandal sandals".split(), "sandal"),
    **dict.fromkeys("flipflops flipflop sliders slider".split(), "flipflop"),
    **dict.fromkeys("slipper slippers".split(), "slipper"),
    **dict.fromkeys("flats ballerinas ballerina".split(), "flats"),
    **dict.fromkeys("loafer loafers moccasins moccasin".split(), "loafer"),
    **dict.fromkeys("oxford oxfords derbys derby brogues brogue".split(), "formal"),
    **dict.fromkeys("shirt shirts".split(), "shirt"),
    **dict.fromkeys("tshirt tshirts tee tees polo polos".split(), "tshirt"),
    "blouse": "blouse", "blouses": "blouse",
    **dict.fromkeys("kurta kurtas kurti kurtis tunic tunics".split(), "kurta"),
    **dict.fromkeys("sweater sweaters pullover".split(), "sweater"),
    **dict.fromkeys("cardigan cardigans".split(), "cardigan"),
    **dict.fromkeys("sweatshirt sweatshirts hoodie hoodies".split(), "sweatshirt"),
    **dict.fromkeys("jacket jackets coat coats".split(), "jacket"),
    "jeans": "jeans", **dict.fromkeys("jeggings leggings".split(), "leggings"),
    **dict.fromkeys("trousers trouser".split(), "trousers"), "chinos": "chinos",
    **dict.fromkeys("joggers jogger".split(), "joggers"), "palazzos": "palazzos", "pyjamas": "pyjamas",
    **dict.fromkeys("dress dresses gown gowns".split(), "dress"), **dict.fromkeys("saree sari".split(), "saree"),
    "lehenga": "lehenga", "jumpsuit": "jumpsuit", "playsuit": "playsuit",
    **dict.fromkeys("backpack backpacks".split(), "backpack"), **dict.fromkeys("handbag handbags tote".split(), "handbag"),
    "clutch": "clutch", **dict.fromkeys("wallet wallets".split(), "wallet"),
    **dict.fromkeys("trolley luggage suitcase".split(), "trolley"),
    **dict.fromkeys("watch wristwatch timepiece".split(), "watch"), "sunglasses": "sunglasses",
    "belt": "belt", **dict.fromkeys("cap hat".split(), "cap"), "scarf": "scarf", "socks": "socks",
    "earrings": "earrings", "necklace": "necklace", "bracelet": "bracelet",
    "bra": "bra", "briefs": "briefs", "boxer": "boxer", "boxers": "boxer", "trunk": "trunk", "trunks": "trunk",
    "panties": "briefs", "camisole": "camisole",
    **dict.fromkeys("perfume cologne".split(), "perfume"), "deodorant": "deodorant", "lipstick": "lipstick",
}
GENERIC_TYPES = frozenset("""
shoes shoe footwear top tops pants bottoms bag bags accessory accessories jewellery jewelry lingerie
fragrance toy toys game games
""".split())
# Fact subtype -> the text subtypes it also allows (a subtype always allows itself).
BROADER = {"cardigan": {"sweater"}, "chinos": {"trousers"}, "joggers": {"trackpants", "trousers"},
           "trackpants": {"joggers", "trousers"}, "palazzos": {"trousers"}, "leggings": {"leggings"}, "boatshoe": {"loafer"},
           "driving": {"loafer"}, "loafer": {"driving"}, "sportshoe": {"sneaker"}, "sneaker": {"sportshoe"},
           "playsuit": {"jumpsuit"}, "jumpsuit": {"playsuit"},
           "sweatshirt": {"sweater"}, "sweater": {"sweatshirt"},
           "heel": {"sandal"}}   # Myntra's "Heels" are mostly heeled sandals   # "a green hooded sweater" for a hooded sweatshirt: labelled publishable
_COMPOUND_TYPES = (
    (re.compile(r"\bboat[- ]shoes?\b"), "boatshoe"),
    (re.compile(r"\bdriving[- ]shoes?\b"), "driving"),
    (re.compile(r"\b(?:sports?|running|training|walking)[- ]shoes?\b"), "sportshoe"),
    (re.compile(r"\btrack[- ]?pants\b"), "trackpants"),
    (re.compile(r"\b(?:tactical|cargo)[- ]pants\b"), "cargopants"),   # "tactical pants" for track pants
    (re.compile(r"\bflip[- ]flops?\b"), "flipflop"),
)


# A type named as what to wear the product with, not as the product: "layers easily over a
# hoodie", "pair it with jeans and sneakers", "under a sweater" (up to five words before it).
_WORN_WITH = frozenset("""
over under beneath underneath pair pairs paired team teams teamed match matches matched wear wears
wearing worn layer layers layered style styles styled
""".split())


# A type word before one of these qualifies it and is not the product: "a shirt collar", "cap
# sleeves", "a derby construction", "a wedge heel" (Myntra's human descriptions).
_MODIFIES = PARTS | frozenset("""
sleeve sleeves heel heels style styled styling construction silhouette print pattern dress
""".split())


def subtypes(text: str, worn_with: bool = True) -> dict[str, str]:
    """The subtypes ``text`` names, each with the words that name it: single type words
    (``SUBTYPES``) and two-word ones ("boat shoes", "track pants", whose second word is then
    generic). With ``worn_with=False`` a type named as what the product is worn with or over
    ("layers over a hoodie") is left out."""
    low = _split_hashtags(normalise(text)).casefold()
    for pat, g in _COMPOUND_TYPES:   # one token per two-word subtype
        low = pat.sub(f" _{g}_ ", low)
    found: dict[str, str] = {}
    tokens = re.findall(r"_[a-z]+_|[a-z]+(?:-[a-z]+)?", low.replace("'s", "s"))
    for i, w in enumerate(tokens):
        if not worn_with and _WORN_WITH & set(tokens[max(0, i - 5):i]):
            continue
        if w.startswith("_"):
            found.setdefault(w.strip("_"), w.strip("_"))
        elif (w.replace("-", "") in SUBTYPES and w not in GENERIC_TYPES
              and (i + 1 == len(tokens) or tokens[i + 1] not in _MODIFIES)):
            found.setdefault(SUBTYPES[w.replace("-", "")], w)
    return found


def _subtype_kind(group: str) -> str | None:
    if group in ("boatshoe", "driving", "sportshoe", "flipflop"):
        return "footwear"
    if group in ("trackpants", "cargopants"):
        return "bottom"
    return next((kind(w) for w, g in SUBTYPES.items() if g == group), None)


def type_swaps(text: str, ctx: GuardContext) -> list[str]:
    """The text's subtypes that contradict the subtype the facts name within the same kind
    ("boots" for boat shoes, "sneakers" for heels, "joggers" for jeans)."""
    facts_text = " ".join(str(v) for v in (ctx.title, *ctx.fields.values()) if isinstance(v, str) and v)
    brand = ctx.brand or ctx.fields.get("brand")
    if isinstance(brand, str) and brand.strip():   # "U.S. Polo Assn.", "Calvin Klein Jeans" name no type
        facts_text = re.sub(re.escape(brand.strip()), " ", facts_text, flags=re.IGNORECASE)
        text = re.sub(re.escape(brand.strip()), " ", text, flags=re.IGNORECASE)
    fact_groups = subtypes(facts_text)
    if not fact_groups:
        return []
    bad = []
    for g, word in subtypes(text, worn_with=False).items():
        k = _subtype_kind(g)
        same_kind = [f for f in fact_groups if _subtype_kind(f) == k]
        if g not in fact_groups and same_kind and not any(g in BROADER.get(f, set()) for f in same_kind):
            bad.append(word)
    return bad


def _split_hashtags(text: str) -> str:
    """"#WhiteToys #TennisBalls" -> "White Toys Tennis Balls": a hashtag's words are claims too."""
    return _HASHTAG.sub(lambda m: " " + " ".join(_CAMEL.findall(m.group(1))) + " ", text)


def _words(text: str) -> list[str]:
    text = _split_hashtags(normalise(text)).casefold().replace("'s", "s")
    return [w.replace("'", "") for w in _WORD.findall(text)]


def kind(word: str) -> str | None:
    """The product kind of a type word, singular or plural ("boxer", "boxers", "ballerina")."""
    word = word.replace("-", "")   # "t-shirt", "flip-flops"
    return (TYPES.get(word) or (TYPES.get(word[:-1]) if word.endswith("s") else None)
            or (TYPES.get(word + "s") if word not in _NOT_SINGULAR else None))


def _type_words(text: str) -> list[str]:
    low = _split_hashtags(normalise(text)).casefold()
    tokens = _words(low)
    words = [w for i, w in enumerate(tokens) if kind(w) and w not in ("top", "tops", "suit", "suits")
             and (i + 1 == len(tokens) or tokens[i + 1] not in _MODIFIES)]   # "cap sleeves" (set 6)
    words += ["suit"] if _SUIT_NOUN.search(low) else []
    return words + (["top"] if _TOP_NOUN.search(low) and "on the top" not in low else [])


def fact_words(ctx: GuardContext) -> set[str]:
    """The row's fact tokens, each also without its hyphens ("t-shirt" and "tshirt")."""
    return set(fact_tokens(ctx)) | {w.replace("-", "") for w in fact_tokens(ctx)}


def _row_gender(ctx: GuardContext, facts: set[str]) -> str | None:
    g = str(ctx.fields.get("gender") or "").strip().casefold()
    if g in GENDERS:
        return GENDERS[g]
    in_title = [GENDERS[w] for w in ("men", "women", "boys", "girls", "unisex") if w in facts]
    return in_title[0] if len(in_title) == 1 else None


def title_kinds(ctx: GuardContext) -> set[str]:
    """The kinds of product the title names. The kind is what the title says: a category path is
    too broad ("Toys & Games" holds board-game T-shirts and party headbands)."""
    title = normalise(ctx.title or str(ctx.fields.get("title") or ""))
    words = [w for w in _words(title) if w not in ("top", "tops")]
    kinds = {k for k in map(kind, words) if k}
    return kinds | ({"top"} if _TITLE_TOP.search(_split_hashtags(title).casefold()) else set())


def _claims(text: str, facts: set[str]) -> list[str]:
    low = _split_hashtags(normalise(text)).casefold()
    bad = [m.group() for pat, grounds in CLAIM_PHRASES for m in pat.finditer(low)
           if not grounds & facts]
    bad += [m.group() for m in _THEMED.finditer(low)
            if m.group(1) not in facts and not {"theme", "themed"} & facts]
    return bad


def _opposites(words: list[str], facts: set[str]) -> list[str]:
    parts = [p for w in words for p in w.split("-")]   # "ultra-thin"
    return [p for p in parts if p in OPPOSITES and p not in facts and OPPOSITES[p] & facts]


def _compound_types(words: list[str], facts: set[str]) -> list[str]:
    """A type word put after another as its head, which the facts do not give: "a kurta
    jacket" for a kurta."""
    return [b for a, b in zip(words, words[1:]) if kind(a) and kind(b) and b not in facts
            and b.replace("-", "") not in facts]


def find_mismatches(text: str, ctx: GuardContext) -> list[str]:
    """The attribute words of ``text`` that the row's facts contradict or do not give."""
    facts = fact_words(ctx)
    words = _words(text)
    bad = [w for w in words if w in COLOURS and w not in facts and not SHADES.get(w, set()) & facts]
    bad += [w for w in words if w in MATERIALS and w not in facts and not FORMS.get(w, set()) & facts]
    bad += [w for w in dict.fromkeys(words) if w in CONSTRUCTION and not CONSTRUCTION[w] & facts
            and w.replace("-", "") not in facts]
    bad += [w for w in dict.fromkeys(words) if w in PATTERNS and not PATTERNS[w] & facts]
    bad += [c for c in dict.fromkeys(words)
            if c in CLAIMS and c not in facts and c.replace("-", "") not in facts]
    bad += _claims(text, facts) + _opposites(words, facts) + ungrounded_details(text, facts)
    bad += creatures(text, facts)
    gender = _row_gender(ctx, facts)
    if not str(ctx.fields.get("gender") or "").strip() and _kids_only(_title_words(ctx)):
        bad += _adult_audience(words, ctx, facts)   # a category's "Women" is no gender for it
    elif gender:
        bad += [w for w in words if w in AUDIENCE and w not in facts and gender not in AUDIENCE[w]]
    else:
        bad += _adult_audience(words, ctx, facts)
    kinds = title_kinds(ctx)
    if kinds:
        bad += [w for w in _type_words(text) if w not in facts and kind(w) not in kinds
                and not any((k, kind(w)) in _COMPATIBLE for k in kinds)]
        bad += _compound_types(words, facts)
        bad += [w for w in type_swaps(text, ctx) if w not in bad]
    return list(dict.fromkeys(bad))  # a word two checks find is named once


def names_product(text: str, ctx: GuardContext) -> bool:
    """Whether ``text`` says what the product is, when its title names a type: some type word of
    a kind the title names (or one the facts give). "A white, elegant and stylish
    nail-polishing product for women" for a watch and "men's sportswear" for a shirt do not;
    words such as "item", "option" or "product" say nothing."""
    kinds = title_kinds(ctx)
    if not kinds:
        return True
    facts = fact_words(ctx)
    return any(kind(w) in kinds or w in facts or any((k, kind(w)) in _COMPATIBLE for k in kinds)
               for w in _type_words(text))


def check_attribute_mismatch(text: str, ctx: GuardContext) -> str | None:
    """``attribute_mismatch`` when the text gives a colour, material, pattern, gender, product type,
    claim or construction detail (``DETAIL_PHRASES``) that the row contradicts or does not give. English texts only: the vocabularies are."""
    if not ctx.locale.lower().startswith("en"):
        return None
    return "attribute_mismatch" if find_mismatches(text, ctx) else None


def check_product_named(text: str, ctx: GuardContext) -> str | None:
    """``attribute_mismatch`` when a product text never says what the product is (the title's
    type in any of its words: a watch that is only "women's workwear"). For product copy
    (description, blurb, social post, ad), not for FAQ answers or review digests, which may
    rightly speak of the product without naming it. English texts only."""
    if not ctx.locale.lower().startswith("en"):
        return None
    return None if names_product(text, ctx) else "attribute_mismatch"
