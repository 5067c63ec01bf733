"""Generated text as a text model's samples look over training: random characters at first, then
words, and (in a collapse) runs of punctuation as in report 000 (":::,:,,:,,,::,:,::::,::,,:,").
"""

from __future__ import annotations

import numpy as np

# A few hundred characters' worth of early-modern English words, so a healthy sample reads like a
# char model's Shakespeare rather than a test string.
WORDS = (
    "the and to of I you my a that in is not it with me be his your this but he have as thou so "
    "him will what thy all her do by no shall if are we thee our lord on good now sir from king "
    "come they well or let was would which more then there how she here their love man hath one "
    "upon know may make an like say what did should us them time these father death heart blood "
    "night speak sweet fair eyes hand grace noble honour duke queen crown heaven gentle brother"
).split()
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ     \n,.;:!?'-"
PUNCTUATION = ",:;.'!?"


def sample_text(rng: np.random.Generator, quality: float, punct: float, length: int) -> str:
    """A sample of about `length` characters: `quality` in [0, 1] is the share of real words (the
    rest random characters), `punct` the share of characters replaced by punctuation runs."""
    out: list[str] = []
    while sum(map(len, out)) < length:
        if rng.random() < quality:
            word = str(rng.choice(WORDS))
            out.append(word.capitalize() if rng.random() < 0.1 else word)
            out.append("\n" if rng.random() < 0.08 else (", " if rng.random() < 0.06 else " "))
        else:
            out.append("".join(rng.choice(list(CHARS), size=int(rng.integers(1, 6)))))
    chars = list("".join(out)[:length])
    for i in np.flatnonzero(rng.random(len(chars)) < punct):
        chars[i] = str(rng.choice(list(",:")) if rng.random() < 0.85 else rng.choice(list(PUNCTUATION)))
    return "".join(chars)


def punctuation_share(text: str) -> float:
    """The share of non-space characters that are punctuation: the collapse's own measure."""
    visible = [c for c in text if not c.isspace()]
    return sum(c in PUNCTUATION for c in visible) / max(1, len(visible))
