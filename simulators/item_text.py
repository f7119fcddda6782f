"""Generated item titles whose words depend on an item's hidden attributes.

`item_titles` writes one short title per item from its topic, quality and appeal plus
noise, so that text tells a platform something its numeric features do not: the topic
(also a public feature), the quality (only through words such as "in-depth" or
"low-effort") and the clickbait appeal (words such as "SHOCKING" or "you won't believe").
Each attribute shows up with a probability, so a title is evidence, never a readout:

    topic        one noun of the topic's list (always) and a second with probability 0.5
    quality q    a quality word with probability 0.9 and another with probability 0.5:
                 each a high-quality word with probability q, else a low-quality word
    appeal a     a clickbait word with probability a and another with probability a²;
                 without one, a calm word with probability 0.7
    noise        one word of a neutral list with probability 0.7

Titles are reproducible from the generator's seed.
"""

from __future__ import annotations

from loe_gym.types import FloatArray, Generator, IntArray

__all__ = ["item_titles"]

_TOPIC_NOUNS = (
    ("recipe", "pasta", "kitchen", "baking", "chef"),
    ("football", "match", "goal", "league", "striker"),
    ("travel", "beach", "mountain", "city tour", "road trip"),
    ("song", "guitar", "concert", "album", "drummer"),
    ("science", "physics", "space", "experiment", "biology"),
    ("comedy", "sketch", "prank", "stand-up", "parody"),
    ("fashion", "outfit", "makeup", "style", "sneakers"),
    ("gaming", "speedrun", "boss fight", "console", "strategy game"),
    ("money", "stocks", "budget", "investing", "savings"),
    ("puppy", "cat", "pets", "dog training", "kitten"),
)
_HIGH_QUALITY = ("in-depth", "expert", "carefully researched", "masterclass", "detailed")
_LOW_QUALITY = ("low-effort", "reupload", "blurry", "rushed", "random clips")
_CLICKBAIT = ("SHOCKING", "you won't believe", "gone wrong", "INSANE", "must see!!!")
_CALM = ("guide", "explained", "review", "notes", "walkthrough")
_NEUTRAL = ("today", "part 2", "new", "at home", "with friends", "2026", "short")


def _topic_nouns(topic: int) -> tuple[str, ...]:
    nouns = _TOPIC_NOUNS[topic % len(_TOPIC_NOUNS)]
    round_ = topic // len(_TOPIC_NOUNS)  # more topics than lists: numbered variants
    return nouns if round_ == 0 else tuple(f"{noun} {round_ + 1}" for noun in nouns)


def item_titles(
    topics: IntArray, quality: FloatArray, appeal: FloatArray, rng: Generator
) -> tuple[str, ...]:
    """One title per item from ``topics``, ``quality`` and ``appeal`` (each ``(M,)``, the
    last two in [0, 1]), with the noise of the module docstring drawn from ``rng``."""
    titles = []
    for topic, q, a in zip(topics.tolist(), quality.tolist(), appeal.tolist(), strict=True):
        nouns = _topic_nouns(int(topic))
        words = [nouns[rng.integers(len(nouns))]]
        if rng.random() < 0.5:
            words.append(nouns[rng.integers(len(nouns))])
        for chance in (0.9, 0.5):  # up to two pieces of evidence of quality
            if rng.random() < chance:
                pool = _HIGH_QUALITY if rng.random() < q else _LOW_QUALITY
                words.insert(0, pool[rng.integers(len(pool))])
        baits = [rng.random() < a, rng.random() < a * a]
        for _ in range(sum(baits)):
            words.insert(0, _CLICKBAIT[rng.integers(len(_CLICKBAIT))])
        if not any(baits) and rng.random() < 0.7:
            words.append(_CALM[rng.integers(len(_CALM))])
        if rng.random() < 0.7:
            words.append(_NEUTRAL[rng.integers(len(_NEUTRAL))])
        titles.append(" ".join(words))
    return tuple(titles)
