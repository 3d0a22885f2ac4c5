"""The offline judge: ``groundedness`` without a model, for ``ai-factory eval --target local``.

Offline, every route is answered by the offline model, which cannot grade anything; so the local target
grades with this judge instead of sending judge prompts to it. It is honest about what it can do:

* ``groundedness`` is scored by a documented, deterministic **lexical support** check (below) of the
  answer against the passages the gateway retrieved;
* any other rubric (``llm-judge``) is refused with ``JudgeUnavailableError``: no score is made up.

The lexical support check (``lexical_groundedness``):

1. The answer's ``[n]`` markers are removed and the answer is split into **claims**: sentences, and
   clauses separated by ``;`` (bullets and lines count as sentences too).
2. A claim's **content words** are its words and numbers minus English function words (articles,
   pronouns, auxiliaries, negations, light verbs such as *get* or *make*). Hosts, paths, e-mail addresses
   and decimals (``vpn.corp.example.com``, ``03:00``) are one word each; a possessive ``'s`` is dropped.
3. A content word is **supported** when the passages have it: numbers and dotted names exactly (a
   dotted name may be a part of a longer one, ``id.corp.example.com`` in ``id.corp.example.com/reset``);
   other words after removing a common suffix (*-s*, *-es*, *-ed*, *-ing*, *-al*, *-ation*...), so
   *approves* matches *approval*; a hyphenated word when its parts are supported; an upper-case
   acronym of three to six letters when the passages spell it out (*MFA*: *multi-factor
   authentication*).
4. A claim is **supported** when every content word is. A claim that says the sources do not hold the
   answer (*the sources do not say*, *I cannot find ...*, *no information*) is grounded, as the rubric
   says: its own words and the question's words count as supported, anything else it adds does not.
5. The score is the share of supported claims (claims without content words are not counted); an
   answer with no claim to check scores 0.

What it cannot see: meaning. A paraphrase with words the passages lack counts as unsupported, and a
claim that contradicts the passages with their own words (a dropped "not") counts as supported. It
checks the answers a suite scripts for the offline model; a real judge model (``--target gateway``)
checks real answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .assertions import JudgeUnavailableError

__all__ = ["OfflineJudge", "lexical_groundedness"]

ONLY_GROUNDEDNESS = (
    "the offline judge scores only groundedness (a lexical check against the passages, "
    "docs/evaluation.md); an llm-judge rubric needs a judge model: run with --target gateway"
)


class OfflineJudge:
    """A ``Judge`` that needs no model: ``groundedness`` by lexical support, every other rubric refused."""

    def score(
        self, rubric: str, input_text: str, output_text: str, *, model: str | None = None
    ) -> tuple[float, str]:
        """Refuses: a generic rubric needs a model (``JudgeUnavailableError``)."""
        raise JudgeUnavailableError(ONLY_GROUNDEDNESS)

    def groundedness(self, sources: Sequence[str], question: str, answer: str) -> tuple[float, str]:
        """``(score in 0..1, reason)`` of ``answer`` against the passages (``lexical_groundedness``)."""
        return lexical_groundedness(sources, question, answer)

    def close(self) -> None:
        """Nothing to close (the harness closes every judge)."""


# --- the lexical support check ---------------------------------------------------------------------

# A word, a number, or words joined by . ' / @ : - without spaces (hosts, paths, e-mail, 5th, 03:00).
_TOKEN = re.compile(r"[^\W_]+(?:[.'\u2019/@:\-][^\W_]+)*")
_MARKER = re.compile(r"\[\d{1,4}\]")
_CLAIM_SPLIT = re.compile(r"(?<=[.!?;])\s+|;\s*|\n+")
_DOTTED = re.compile(r"[./@:]")
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ies", "ied", "ed", "es", "al", "s")

# Function words, auxiliaries, negations and light verbs: a claim is not checked on them.
_FUNCTION_WORDS = """
    a an the this that these those there here it its it's they them their theirs he him his she her hers
    we us our ours you your yours i me my mine one ones who whom whose which what when where why how
    and or nor but so yet if then than as of at by for from in into on onto to with without within
    about above below over under after before during until up down out off again further once also
    just only very too both each every all any some such no not never none nothing n't don't doesn't
    didn't isn't aren't wasn't weren't can't cannot won't wouldn't shouldn't couldn't mustn't
    be is are was were been being am have has had having do does did doing done get gets got getting
    make makes made take takes took give gives gave go goes went come comes came use uses used
    can could may might must shall should will would need needs
    yes ok okay please thanks thank e.g i.e etc via per
"""
STOPWORDS = frozenset(_FUNCTION_WORDS.split())

# A claim that says the sources do not hold the answer (the rubric counts it as grounded).
_SOURCE_NOUN = r"(?:sources?|documents?|passages?|context|articles?|excerpts?|texts?|materials?)"
_NEGATION = r"(?:\bnot|n't|\bno|\bnever|\bnothing|\bnone|\bneither)"
_SAYING = (
    r"(?:say|says|said|state|states|stated|contain|contains|mention|mentions|mentioned|cover|covers|"
    r"covered|include|includes|included|answer|answers|specify|specifies|specified|provide|provides|"
    r"provided|tell|tells|give|gives|address|addresses|discuss|discusses|list|lists|listed|describe|"
    r"describes|have|has|hold|holds|show|shows|found|find)"
)
_ABSTENTION = (
    # a source noun, a negation and a verb of saying, in any order ("the sources do not say", "not
    # mentioned in the documents")
    re.compile(rf"^(?=.*\b{_SOURCE_NOUN}\b)(?=.*{_NEGATION}\b)(?=.*\b{_SAYING}\b)"),
    re.compile(r"\b(?:no|not enough|insufficient) information\b"),
    re.compile(
        r"\bi (?:do not|don't|cannot|can't|could not|couldn't|am unable to) (?:know|find|tell|answer|say)\b"
    ),
    re.compile(r"\bunable to (?:find|answer|tell)\b"),
)


def _normal(token: str) -> str:
    token = token.lower().replace("\u2019", "'")
    return token[:-2] if token.endswith("'s") else token


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _parts(token: str) -> list[str]:
    return [p for p in re.split(r"[.'/@:\-]", token) if p]


# Words an abstention uses to say what the sources lack (compared by stem).
_ABSTENTION_STEMS = frozenset(
    _stem(w)
    for w in [
        *re.findall(r"[a-z]+", _SOURCE_NOUN.replace("s?", "") + _SAYING),
        *("information", "enough", "insufficient", "unable", "know", "given", "available", "answer"),
    ]
)


@dataclass(frozen=True)
class _Vocabulary:
    """What a text supports: its normalised tokens, stems, dotted names and word initials."""

    tokens: frozenset[str]
    stems: frozenset[str]
    dotted: tuple[str, ...]
    initials: tuple[str, ...]

    @classmethod
    def of(cls, texts: Iterable[str]) -> _Vocabulary:
        tokens: set[str] = set()
        dotted: list[str] = []
        initials: list[str] = []
        for text in texts:
            words = [_normal(t) for t in _TOKEN.findall(text)]
            tokens.update(words)
            for word in words:
                tokens.update(_parts(word))
            dotted.extend("\0" + _DOTTED.sub("\0", w) + "\0" for w in words if _DOTTED.search(w))
            initials.append("".join(p[0] for w in words for p in re.split(r"-", w) if p))
        return cls(frozenset(tokens), frozenset(_stem(t) for t in tokens), tuple(dotted), tuple(initials))

    def supports(self, raw: str) -> bool:
        word = _normal(raw)
        if word in self.tokens:
            return True
        if _DOTTED.search(word):  # a host, path, address or decimal: exactly, or a part of a longer one
            needle = "\0" + _DOTTED.sub("\0", word) + "\0"
            return any(needle in name for name in self.dotted)
        if any(ch.isdigit() for ch in word):
            return False  # numbers only exactly
        if "-" in word or "'" in word:
            return all(self.supports(part) for part in _parts(word))
        if raw.isupper() and 3 <= len(raw) <= 6:  # an acronym the passages spell out
            return any(word in spelled for spelled in self.initials)
        return _stem(word) in self.stems


def content_words(text: str) -> list[str]:
    """The words of ``text`` a claim is checked on, in order (function words and markers left out)."""
    words = _TOKEN.findall(_MARKER.sub(" ", text))
    return [w for w in words if _normal(w) not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def claims(answer: str) -> list[str]:
    """The answer's sentences and ``;`` clauses, without ``[n]`` markers and bullets."""
    text = _MARKER.sub("", answer)
    parts = (p.strip().lstrip("-*•").strip() for p in _CLAIM_SPLIT.split(text))
    return [p.rstrip(".!?;:, ") for p in parts if p.strip(".!?;:, ")]


def is_abstention(claim: str) -> bool:
    """Whether the claim says the sources do not hold the answer."""
    lowered = claim.lower().replace("\u2019", "'")
    return any(pattern.search(lowered) for pattern in _ABSTENTION)


def lexical_groundedness(sources: Sequence[str], question: str, answer: str) -> tuple[float, str]:
    """``(share of supported claims, reason)``; the reason names each unsupported claim and its words."""
    support = _Vocabulary.of(sources)
    asked = _Vocabulary.of([question])
    checked, unsupported = 0, []
    for claim in claims(answer):
        words = content_words(claim)
        if not words:
            continue
        checked += 1
        if is_abstention(claim):
            missing = [
                w
                for w in words
                if _stem(_normal(w)) not in _ABSTENTION_STEMS
                and not support.supports(w)
                and not asked.supports(w)
            ]
        else:
            missing = [w for w in words if not support.supports(w)]
        if missing:
            unsupported.append(f"{_quote(claim)} ({', '.join(dict.fromkeys(missing))})")
    if checked == 0:
        return 0.0, "offline lexical check: the answer makes no claim to check against the sources"
    score = (checked - len(unsupported)) / checked
    why = f"offline lexical check: {checked - len(unsupported)}/{checked} claims supported by the sources"
    if unsupported:
        why += "; unsupported: " + "; ".join(unsupported)
    return score, why


def _quote(claim: str, limit: int = 80) -> str:
    return repr(claim if len(claim) <= limit else claim[: limit - 1] + "…")
