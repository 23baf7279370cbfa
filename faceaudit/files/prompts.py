"""Prompt text: group descriptions with correct articles, identity names, edit phrases."""

from __future__ import annotations

import itertools
import random

_VOWEL_SOUND_EXCEPTIONS = {"one", "uni", "use", "eu", "hour", "honest", "heir"}


def article(word: str) -> str:
    """``"an"`` before a vowel sound, else ``"a"`` ("an Asian", "an Indian", "a Black", "an old").

    >>> [article(w) for w in ["Asian", "Black", "Indian", "White", "old", "young", "unicorn", "hour"]]
    ['an', 'a', 'an', 'a', 'an', 'a', 'a', 'an']
    """
    lower = word.lower()
    if any(lower.startswith(e) for e in _VOWEL_SOUND_EXCEPTIONS):
        return "an" if lower.startswith(("hour", "honest", "heir")) else "a"
    return "an" if lower[:1] in "aeiou" else "a"


def describe(attributes: dict[str, str], order: tuple[str, ...] = ("age", "race", "gender")) -> str:
    """``{"race": "Asian", "gender": "woman"}`` -> ``"an Asian woman"`` (attributes in ``order``)."""
    words = [attributes[k] for k in order if k in attributes]
    words += [v for k, v in attributes.items() if k not in order]
    phrase = " ".join(words)
    return f"{article(phrase)} {phrase}"


def render(template: str, attributes: dict[str, str], name: str = "") -> str:
    """Fill ``{group}`` (with article) and ``{name}`` in a template; unknown fields are errors."""
    try:
        text = template.format(group=describe(attributes), name=name, **attributes)
    except KeyError as err:
        raise ValueError(f"prompt template {template!r} uses unknown field {err}; use {{group}}, {{name}} or an attribute") from None
    return " ".join(text.split())


_GIVEN = ["Alex", "Sam", "Jordan", "Riley", "Casey", "Morgan", "Taylor", "Jamie", "Avery", "Quinn", "Rowan", "Sage",
          "Ari", "Drew", "Emery", "Finley", "Harper", "Kai", "Lane", "Milan", "Noa", "Reese", "Skyler", "Tatum"]
_FAMILY = ["Arden", "Blake", "Carden", "Dale", "Ellery", "Farrow", "Greer", "Hollis", "Ives", "Lark", "Marlow", "Noel",
           "Oakes", "Pryor", "Quill", "Rook", "Sutter", "Thorne", "Vale", "Wren", "Yates", "Zell", "Bramble", "Cross"]


def invented_names(count: int, seed: int) -> list[str]:
    """``count`` distinct invented full names, reproducible from ``seed``."""
    pool = [f"{g} {f}" for g, f in itertools.product(_GIVEN, _FAMILY)]
    if count > len(pool):
        raise ValueError(f"at most {len(pool)} invented names per group (asked for {count})")
    return random.Random(seed).sample(pool, count)
