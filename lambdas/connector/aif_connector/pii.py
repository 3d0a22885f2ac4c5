"""PII detectors that need no network: regular expressions for candidates, checksums and rules to confirm.

``detect(text)`` returns non-overlapping :class:`Finding` spans, sorted by start. Every structured kind
is confirmed by the rule its issuer defines (Luhn for cards, ISO 13616 mod-97 for IBANs, the control key
of a French NIR, the control letter of a Spanish DNI/NIE, ISO 7064 MOD 11,10 for the German tax ID,
the SSA's never-issued ranges for US SSNs, ``ipaddress`` for IPs), so look-alikes such as order
numbers, dates, version strings and product codes are rejected rather than masked. Names are found
from context ("Name: X", "Dear X", "Mr. X", "Regards, X") and, without a cue word, as a known given
name followed by a surname (:mod:`aif_connector.names`); they carry a low confidence, and every further
occurrence of a name found either way in the same text is reported too.

Standard library only: this module runs in the connector Lambda, whose runtime has no third-party
packages besides boto3. :func:`detect_comprehend` (optional, behind the connector's flag) asks Amazon
Comprehend ``DetectPiiEntities`` for free text and returns the same :class:`Finding` type.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aif_connector.names import free_text_names

EMAIL = "EMAIL"
PHONE = "PHONE"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN"
IP_ADDRESS = "IP_ADDRESS"
US_SSN = "US_SSN"
UK_NINO = "UK_NINO"
DE_TAX_ID = "DE_TAX_ID"
FR_NIR = "FR_NIR"
ES_DNI = "ES_DNI"
PERSON_NAME = "PERSON_NAME"

#: Kinds with a syntax and a check defined by their issuer: the ones the recall floor applies to.
STRUCTURED_KINDS: frozenset[str] = frozenset(
    {EMAIL, PHONE, CREDIT_CARD, IBAN, IP_ADDRESS, US_SSN, UK_NINO, DE_TAX_ID, FR_NIR, ES_DNI}
)
ALL_KINDS: frozenset[str] = STRUCTURED_KINDS | {PERSON_NAME}


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected span: ``text == source[start:end]``; ``confidence`` in [0, 1]."""

    kind: str
    start: int
    end: int
    text: str
    confidence: float


# ---------------------------------------------------------------------------------------------- checks


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# ISO 13616 registry: country code -> IBAN length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of an IBAN without spaces (upper case)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def de_tax_id_ok(digits: str) -> bool:
    """German Steuerliche Identifikationsnummer: 11 digits, digit-repetition rule, ISO 7064 MOD 11,10."""
    if len(digits) != 11 or digits[0] == "0":
        return False
    head = digits[:10]
    counts = sorted((head.count(d) for d in set(head)), reverse=True)
    # Exactly one digit appears twice or three times; all others at most once.
    if counts[0] not in (2, 3) or (len(counts) > 1 and counts[1] > 1):
        return False
    if counts[0] == 3 and any(head[i] == head[i + 1] == head[i + 2] for i in range(8)):
        return False
    product = 10
    for ch in head:
        s = (int(ch) + product) % 10 or 10
        product = (s * 2) % 11
    check = (11 - product) % 10
    return check == int(digits[10])


def fr_nir_ok(compact: str) -> bool:
    """French NIR (numéro de sécurité sociale): 13 characters + 2-digit key = 97 - (number mod 97)."""
    if len(compact) != 15:
        return False
    body = compact[:13].replace("2A", "19").replace("2B", "18")
    if not body.isdigit() or not compact[13:].isdigit():
        return False
    return 97 - int(body) % 97 == int(compact[13:])


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_ok(compact: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter): control letter mod 23."""
    first = compact[0]
    if first in "XYZ":
        compact = str("XYZ".index(first)) + compact[1:]
    number, letter = compact[:-1], compact[-1]
    return len(number) == 8 and number.isdigit() and _DNI_LETTERS[int(number) % 23] == letter


def us_ssn_ok(digits: str) -> bool:
    """SSA rules: no area 000, 666 or 900-999, no group 00, no serial 0000, not a published sample."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in ("078051120", "219099999", "123456789")


# ------------------------------------------------------------------------------------------ detectors
# Each detector yields (kind, start, end, confidence) for one kind. Candidate patterns are anchored by
# look-behinds so a long run of letters or digits is scanned once, never from each of its positions.
#
# Speed: a pattern whose first item is a character class or a literal lets Python's regex
# engine skip in C to the next character that can start a match; a pattern that starts with a
# look-behind, ``\b`` or a case-insensitive group is instead tried at every position of the text. So
# the look-behind comes one character in: ``[0-9](?<!X.)`` is ``(?<!X)[0-9]`` (at the start of the
# text the two-character look-behind cannot match, so the negative one holds, as the original does).
# Case-insensitive cue words are looked up as literals in the lower-cased text first (see _names).

_Raw = tuple[str, int, int, float]
_NOT_WORD_BEFORE = r"(?<![\w@.+-])"
_NOT_WORD_AFTER = r"(?![\w@-]|\.\w)"


def _context(text: str, start: int, width: int = 32) -> str:
    return text[max(0, start - width) : start].lower()


_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.[A-Za-z]{2,24}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)


_LOCAL_PART = re.compile(r"[A-Za-z0-9._%+-]*")


def _email_starts(text: str) -> list[int]:
    """Where an address can start: for each "@", the start of the run of local-part characters just
    before it (the look-behind rules out any other start; a local part is at most 64 characters)."""
    starts = []
    at = text.find("@")
    while at != -1:
        before = text[max(0, at - 64) : at][::-1]
        starts.append(at - _LOCAL_PART.match(before).end())  # type: ignore[union-attr]  # * always matches
        at = text.find("@", at + 1)
    return starts


def _emails(text: str) -> Iterator[_Raw]:
    if "@" not in text:
        return
    for m in _finditer_from(_EMAIL_RE, text, _email_starts(text)):
        local, _, domain = m.group().partition("@")
        if ".." in local or local.endswith(".") or any(p.endswith("-") for p in domain.split(".")):
            continue
        yield EMAIL, m.start(), m.end(), 0.95


# A phone candidate: + and country code, or a national trunk/area layout; separators are a space,
# dot, hyphen or parentheses. The checks below decide.
# (Each alternative's first character is matched by the leading class; ``(?<=c)`` then says which
# alternative that character starts, in the original order, so the match is the same.)
_PHONE_RE = re.compile(
    r"[+(0-9](?<![\w+.-].)(?:"
    r"(?<=\+)[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,5}\)?){2,6}"  # E.164 / international
    r"|(?<=0)0[1-9][0-9]{0,3}(?:[ .-][0-9]{1,8}){2,6}"  # international with 00 prefix, separated
    r"|(?<=\()[0-9]{2,5}\)[ ]?[0-9]{3,4}[ .-]?[0-9]{3,4}"  # (020) 7946 0958, (555) 123-4567
    r"|(?<=[0-9])[0-9]{2}[.-][0-9]{3}[.-][0-9]{4}"  # 555-123-4567, 555.123.4567
    r"|(?<=[2-9])[0-9]{2} [2-9][0-9]{2} [0-9]{4}"  # 415 555 2671
    r"|(?<=0)[1-9][0-9]{0,4}(?:[ /-][0-9]{2,8}){1,4}"  # 020 7946 0958, 030 12345678, 06 12 34 56 78
    r"|(?<=0)[1-9](?:\.[0-9]{2}){4}"  # 06.12.34.56.78
    r"|(?<=[0-9])[0-9]{9,10}"  # bare digits: only with a phone word before them
    r")(?![\w-]|[.,][0-9])"
)
_PHONE_WORDS = ("phone", "tel", "mobile", "mob", "cell", "call", "fax", "whatsapp", "sms", "téléphone",
                "telefon", "handy", "teléfono", "ring", "contact")  # fmt: skip
_NOT_PHONE_WORDS = ("order", "invoice", "sku", "part", "serial", "ref", "tracking", "item", "product",
                    "article", "model", "isbn", "ticket", "case", "account no", "iban", "po ", "id ",
                    "id:", "#", "no.", "version", "batch", "lot")  # fmt: skip
_DATE_LIKE = re.compile(
    r"^(?:[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}|[0-9]{1,2}[-./][0-9]{1,2}[-./][0-9]{2,4})$"
)


def _phones(text: str) -> Iterator[_Raw]:
    pos = 0
    while (m := _PHONE_RE.search(text, pos)) is not None:
        pos = m.start() + 1  # the look-behind makes the next try start at the next group, not inside one
        before = _context(text, m.start(), 24)
        phone_word = any(w in before for w in _PHONE_WORDS)
        if not phone_word and any(w in before for w in _NOT_PHONE_WORDS):
            continue
        s = m.group()
        # A run of digit groups may hold a phone number followed by other numbers: when the whole
        # run is not a phone number, try it shortened at each space between groups, longest first.
        ends = [len(s), *[g.start() for g in re.finditer(r" (?=[0-9(])", s)][::-1]]
        for end in ends:
            confidence = _phone_confidence(s[:end], phone_word)
            if confidence is not None:
                yield PHONE, m.start(), m.start() + end, confidence
                pos = m.start() + end
                break


def _phone_confidence(s: str, phone_word: bool) -> float | None:
    if _DATE_LIKE.match(s):
        return None
    digits = re.sub(r"[^0-9]", "", s)
    if s.startswith("+") or s.startswith("00"):
        national = digits if s.startswith("+") else digits[2:]
        if not 8 <= len(national) <= 15:
            return None
        confidence = 0.9
    elif s.isdigit():
        if not phone_word or not 10 <= len(s) <= 11:
            return None
        confidence = 0.7
    else:
        if not 9 <= len(digits) <= 12:
            return None
        # North American layout: area and exchange codes never start with 0 or 1.
        if re.fullmatch(r"\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}", s) and (
            digits[0] in "01" or digits[3] in "01"
        ):
            return None
        confidence = 0.75
    return round(min(1.0, confidence + 0.1), 2) if phone_word else confidence


_CARD_RE = re.compile(r"[0-9](?<![\w.-].)(?:[ -]?[0-9]){12,18}(?![\w-]|[.,][0-9])")
_CARD_PREFIX = re.compile(
    r"^(?:4|5[1-5]|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9]{2}|7[01][0-9]|720)|3[47]|3(?:0[0-5]|[68])"
    r"|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8][0-9])|5[06-9]|6[0-9])"
)


def _cards(text: str) -> Iterator[_Raw]:
    pos = 0
    while (m := _CARD_RE.search(text, pos)) is not None:
        pos = m.start() + 1  # the next try starts at the next digit group (see the look-behind)
        found = _card_in(m.group())
        if found is not None:
            start, end, confidence = found
            yield CREDIT_CARD, m.start() + start, m.start() + end, confidence
            pos = m.start() + end


def _card_in(s: str) -> tuple[int, int, float] | None:
    """The longest valid card number in a run of digit groups (a run may hold a card and more)."""
    if _card_ok(s):
        return 0, len(s), _card_confidence(s)
    bounds = [(g.start(), g.end()) for g in re.finditer(r"[0-9]+", s)]
    best: tuple[int, int, float] | None = None
    for i, (start, _) in enumerate(bounds):
        for _, end in bounds[i:]:
            if (best is None or end - start > best[1] - best[0]) and _card_ok(s[start:end]):
                best = (start, end, _card_confidence(s[start:end]))
    return best


def _card_ok(s: str) -> bool:
    digits = s.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits) or not _CARD_PREFIX.match(digits):
        return False
    seps = {ch for ch in s if not ch.isdigit()}
    if len(seps) > 1:
        return False
    if seps:
        # Cards are printed in groups of 4 (or 4-6-5 / 4-6-4 for Amex and Diners).
        sizes = [len(g) for g in re.split(r"[ -]", s)]
        return min(sizes) >= 3 and max(sizes) <= 6
    return True


def _card_confidence(s: str) -> float:
    return 0.95 if not s.isdigit() or len(s) == 16 else 0.85


_IBAN_START = re.compile(r"([A-Z](?<![A-Za-z0-9].)[A-Z])[0-9]{2}(?=[ ]?[A-Z0-9])")


def _ibans(text: str) -> Iterator[_Raw]:
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        # Walk forward over the expected number of characters, allowing single spaces between them.
        chars = [text[m.start() + k] for k in range(4)]
        pos = m.end()
        while len(chars) < length and pos < len(text):
            ch = text[pos]
            if ch == " " and pos + 1 < len(text) and text[pos + 1] != " " and chars[-1] != " ":
                pos += 1
                continue
            if not (ch.isascii() and (ch.isdigit() or ch.isupper())):
                break
            chars.append(ch)
            pos += 1
        if len(chars) != length or (pos < len(text) and text[pos].isalnum()):
            continue
        if iban_ok("".join(chars)):
            yield IBAN, m.start(), pos, 0.98


_IPV4_RE = re.compile(r"[0-9](?<![\w.].)[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![\w]|\.[0-9])")
# A run of hex digits and colons, whole (the look-behind and look-ahead reject a part of a longer run),
# holding at least two colons (fewer is never an address: such runs are not even matched).
_IPV6_RE = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?![\w:])")
_IPV6_V4_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{2,30}:[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![\w.])")
_VERSION_WORDS = ("version", "ver", "v", "release", "build", "firmware", "fw", "os", "app", "pkg", "==",
                  "chapter", "section", "figure", "table", "clause", "§")  # fmt: skip


# Every IPv6 address ``ipaddress`` accepts holds "::" or all its groups (eight, or six and an IPv4
# address), so a hex digit on each side of a colon somewhere: texts with neither (JSON's '": "' has no
# hex digit before its colon) skip IPv6.
# (Written to start with the colon: the engine then jumps from colon to colon.)
_IPV6_HINT = re.compile(r":(?<=[0-9A-Fa-f]:)[0-9A-Fa-f]")
# Likewise an IPv4 address has a digit on each side of a dot.
_IPV4_HINT = re.compile(r"\.(?<=[0-9]\.)[0-9]")


def _ips(text: str) -> Iterator[_Raw]:
    if "." in text and _IPV4_HINT.search(text) is not None:
        for m in _IPV4_RE.finditer(text):
            before = _context(text, m.start(), 12).rstrip()
            if before.endswith(_VERSION_WORDS) or before.endswith(("v", "v.")):
                continue
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            yield IP_ADDRESS, m.start(), m.end(), 0.85
    if text.count(":") >= 2 and ("::" in text or _IPV6_HINT.search(text) is not None):
        for pattern in (_IPV6_V4_RE, _IPV6_RE):
            for m in pattern.finditer(text):
                s = m.group()
                if s.count(":") < 2 or len(s.replace(":", "")) < 3:
                    continue
                try:
                    ipaddress.IPv6Address(s)
                except ValueError:
                    continue
                yield IP_ADDRESS, m.start(), m.end(), 0.9


_SSN_RE = re.compile(r"([0-9](?<![\w-].)[0-9]{2})([- ]?)([0-9]{2})\2([0-9]{4})(?![\w-]|[.,][0-9])")
_SSN_WORDS = ("ssn", "social security", "ss#", "ss #", "soc sec", "taxpayer")


def _us_ssns(text: str) -> Iterator[_Raw]:
    for m in _SSN_RE.finditer(text):
        digits = m.group(1) + m.group(3) + m.group(4)
        has_word = any(w in _context(text, m.start()) for w in _SSN_WORDS)
        if not us_ssn_ok(digits) or (not m.group(2) and not has_word):
            continue  # nine bare digits are an SSN only when the text says so
        if m.group(2) == " " and not has_word:
            continue
        yield US_SSN, m.start(), m.end(), 0.95 if has_word else 0.8


_NINO_RE = re.compile(
    r"([A-CEGHJ-PR-TW-Z](?<!\w.)[A-CEGHJ-NPR-TW-Z])( ?)([0-9]{2})\2([0-9]{2})\2([0-9]{2})\2?([A-D])(?![\w])"
)
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})


def _uk_ninos(text: str) -> Iterator[_Raw]:
    for m in _NINO_RE.finditer(text):
        if m.group(1) not in _NINO_BAD_PREFIX:
            yield UK_NINO, m.start(), m.end(), 0.9


_DE_TAX_RE = re.compile(r"[1-9](?<![\w.,/-].)[0-9](?: ?[0-9]{3}){3}(?![\w/-]|[.,][0-9])")
_DE_TAX_WORDS = ("steuer", "idnr", "id-nr", "identifikationsnummer", "tin", "tax id", "tax-id")


def _de_tax_ids(text: str) -> Iterator[_Raw]:
    for m in _DE_TAX_RE.finditer(text):
        s = m.group()
        if " " in s and s.count(" ") != 3:
            continue
        if de_tax_id_ok(s.replace(" ", "")):
            has_word = any(w in _context(text, m.start()) for w in _DE_TAX_WORDS)
            yield DE_TAX_ID, m.start(), m.end(), 0.95 if has_word else 0.7


_NIR_RE = re.compile(
    r"[1-478](?<![\w.-].)( ?)[0-9]{2}\1(?:0[1-9]|1[0-2]|[2-9][0-9])\1(?:[0-9]{2}|2[AB])\1?[0-9]{3}\1"
    r"[0-9]{3}\1[0-9]{2}(?![\w-]|[.,][0-9])"
)


def _fr_nirs(text: str) -> Iterator[_Raw]:
    for m in _NIR_RE.finditer(text):
        if fr_nir_ok(m.group().replace(" ", "")):
            yield FR_NIR, m.start(), m.end(), 0.95


_DNI_RE = re.compile(r"[0-9XYZ](?<![\w-].)[0-9]{7}-?[A-Z](?![\w-])")  # 8 digits, or X/Y/Z and 7


def _es_dnis(text: str) -> Iterator[_Raw]:
    for m in _DNI_RE.finditer(text):
        if es_dni_ok(m.group().replace("-", "")):
            yield ES_DNI, m.start(), m.end(), 0.9


# Names: a capitalised word (letters, apostrophes, hyphens), one to four of them, or initials.
_APOSTROPHES = "'\u2019"  # O'Brien typed or typeset
_NAME_WORD = (
    rf"[A-ZÀ-ÖØ-Þ](?:[a-zß-öø-ÿ]+(?:[{_APOSTROPHES}-][A-ZÀ-ÖØ-Þa-zß-öø-ÿ][a-zß-öø-ÿ]+)?"
    rf"|[{_APOSTROPHES}][A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+)"
)
_NAME = rf"{_NAME_WORD}(?:[ ](?:[A-Z]\.[ ])?{_NAME_WORD}){{0,3}}"


def _cue_words(*words: str) -> str:
    """``\\b(?:w1|w2|...)`` for capitalised cue words, written so that each starts with its letter."""
    return "(?:" + "|".join(rf"{w[0]}(?<!\w.){w[1:]}" for w in words) + ")"


@dataclass(frozen=True, slots=True)
class _NameContext:
    """A cue-word pattern (group 1: the name) and its confidence.

    ``heads``: for a case-insensitive pattern, which the engine cannot skip through quickly, the
    lower-case literals that every match starts with; matches are then tried only where one of them
    occurs in the lower-cased text (:func:`_caseless`). ``needs``: every match contains one of these.
    """

    pattern: re.Pattern[str]
    confidence: float
    heads: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


# What each alternative of the case-insensitive cue words starts with ("card" for "cardholder" and
# "card holder", "att" for "attn" and "attention", ...).
_LABEL_HEADS = ("full", "first", "last", "surname", "name", "customer", "contact", "patient", "employee",
                "account", "card", "recipient", "att")  # fmt: skip
_SIGN_OFF_HEADS = ("signed", "regards", "sincerely", "best", "cheers", "thank", "yours", "kind regards")
_NAME_CONTEXTS: tuple[_NameContext, ...] = (
    _NameContext(
        re.compile(
            r"(?i:\b(?:full[ _]?name|first[ _]?name|last[ _]?name|surname|name|customer|contact|patient"
            r"|employee|account holder|cardholder|card holder|recipient|attn|attention))"
            rf"[\"']?[ \t]*[:=][ \t]*[\"']?({_NAME})"
        ),
        0.6,
        heads=_LABEL_HEADS,
        needs=(":", "="),
    ),
    _NameContext(
        re.compile(
            rf"{_cue_words('Dear', 'Hi', 'Hello')}[ ]+(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?[ ]+)?({_NAME})"
        ),
        0.5,
        needs=("Dear", "Hi", "Hello"),
    ),
    _NameContext(
        re.compile(
            _cue_words(
                "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Herr", "Frau", "Mme", "Mlle", "Sr", "Sra"
            )
            + rf"\.?[ ]+({_NAME})"
        ),
        0.55,
    ),
    _NameContext(
        re.compile(
            r"\b(?i:signed|regards|sincerely|best|cheers|thanks|thank you|yours truly|kind regards)"
            rf",?[ \t]*(?:\r?\n[ \t]*)?(?:by[ ]+)?({_NAME})"
        ),
        0.45,
        heads=_SIGN_OFF_HEADS,
    ),
)

# Under re.IGNORECASE an ASCII letter also matches these three characters, which str.lower() leaves
# alone (U+0130 is also the only character whose lower case is two characters long).
_CASELESS_ODD = {"\u0130": "i", "\u0131": "i", "\u017f": "s"}
_CASELESS_TABLE = str.maketrans(_CASELESS_ODD)


def _caseless(text: str) -> str:
    """``text`` lower-cased, same length, with every character that a case-insensitive pattern matches
    to an ASCII letter turned into that letter."""
    if not text.isascii() and any(ch in text for ch in _CASELESS_ODD):
        text = text.translate(_CASELESS_TABLE)
    return text.lower()


def _contains_any(text: str, needles: tuple[str, ...]) -> bool:
    for needle in needles:  # noqa: SIM110 (a plain loop: no generator object per call)
        if needle in text:
            return True
    return False


def _occurrences(haystack: str, needles: Iterable[str]) -> list[int]:
    """Every position where one of ``needles`` starts in ``haystack``, sorted."""
    out = []
    for needle in needles:
        i = haystack.find(needle)
        while i != -1:
            out.append(i)
            i = haystack.find(needle, i + 1)
    out.sort()
    return out


def _finditer_from(pattern: re.Pattern[str], text: str, starts: Iterable[int]) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, given (sorted) every position where a match can start.

    finditer's match is the leftmost position from where the last match ended at which the pattern
    matches; when no other position can match, trying only ``starts`` finds the same ones (the
    patterns here never match the empty string)."""
    pos = 0
    for start in starts:
        if start >= pos and (m := pattern.match(text, start)) is not None:
            yield m
            pos = m.end()


_NOT_NAMES = frozenset(
    {
        "Customer",
        "Customers",
        "Sir",
        "Madam",
        "Sirs",
        "Team",
        "All",
        "Everyone",
        "Colleague",
        "Colleagues",
        "Friend",
        "Friends",
        "Support",
        "Admin",
        "Administrator",
        "User",
        "Users",
        "Member",
        "Members",
        "Client",
        "Service",
        "Sales",
        "The",
        "This",
        "That",
        "Unknown",
        "None",
        "Null",
        "Name",
        "Hiring",
        "Manager",
        "Applicant",
        "Valued",
        "Owner",
        "Patient",
        "Employee",
        "Contact",
        "Regards",
        "Thanks",
        "Best",
        "Sincerely",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "Yes",
        "No",
        "Re",
        "Fwd",
        "Subject",
        "Dear",
        "Hi",
        "Hello",
        "Mr",
        "Mrs",
        "Ms",
        "Dr",
    }
)


_LOWER_LETTER = re.compile(r"[a-zß-öø-ÿ]")


def _names(text: str) -> Iterator[_Raw]:
    found: dict[str, float] = {}
    folded: str | None = None
    for context in _NAME_CONTEXTS:
        confidence = context.confidence
        if context.needs and not _contains_any(text, context.needs):
            continue
        if context.heads:
            folded = _caseless(text) if folded is None else folded
            matches = _finditer_from(context.pattern, text, _occurrences(folded, context.heads))
        else:
            matches = context.pattern.finditer(text)
        for m in matches:
            words = m.group(1).split(" ")
            while words and words[-1] in _NOT_NAMES:
                words.pop()
            if not words or words[0] in _NOT_NAMES:
                continue
            name = " ".join(words)
            start = m.start(1)
            yield PERSON_NAME, start, start + len(name), confidence
            found[name] = max(confidence, found.get(name, 0.0))
    # Without a cue word: a known given name followed by a surname ("spoke with Maria Garcia").
    for start, end, confidence in free_text_names(text):
        yield PERSON_NAME, start, end, confidence
        found[text[start:end]] = max(confidence, found.get(text[start:end], 0.0))
    # A name the context revealed is masked wherever else it appears in the same text.
    for name, confidence in found.items():
        # Bounded by anything but a lower-case letter: "Al" is not in "Also", "Ann" is in "Ann2".
        # (str.find, not a regular expression per name: no compile per distinct name.)
        start = text.find(name)
        while start != -1:
            end = start + len(name)
            before = text[start - 1] if start else " "
            after = text[end] if end < len(text) else " "
            if not _LOWER_LETTER.match(before) and not _LOWER_LETTER.match(after):
                yield PERSON_NAME, start, end, round(confidence - 0.1, 2)
            start = text.find(name, start + 1)


DETECTORS: dict[str, Callable[[str], Iterator[_Raw]]] = {
    EMAIL: _emails,
    PHONE: _phones,
    CREDIT_CARD: _cards,
    IBAN: _ibans,
    IP_ADDRESS: _ips,
    US_SSN: _us_ssns,
    UK_NINO: _uk_ninos,
    DE_TAX_ID: _de_tax_ids,
    FR_NIR: _fr_nirs,
    ES_DNI: _es_dnis,
    PERSON_NAME: _names,
}


# --------------------------------------------------------------------------------------------- API


def resolve(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings sorted by start: on overlap the more confident, then the longer, wins."""
    ranked = sorted(findings, key=_rank)
    if len(ranked) < 2:  # the common case: nothing to choose between
        return [f for f in ranked if f.end > f.start]
    taken: list[Finding] = []
    for f in ranked:
        if f.end > f.start and all(f.end <= t.start or f.start >= t.end for t in taken):
            taken.append(f)
    return sorted(taken, key=_start)


def _rank(f: Finding) -> tuple[float, int, int]:
    return -f.confidence, f.start - f.end, f.start


def _start(f: Finding) -> int:
    return f.start


# Kinds a text cannot hold, from what every finding of theirs contains, checked once per text (each
# detector scans the whole text, so on short values the scans are most of the cost):
# an ASCII digit (IPv6 need not have one, "::abc"; _ips checks IPv4's dots itself);
_NEEDS_DIGIT = frozenset({PHONE, CREDIT_CARD, IBAN, US_SSN, UK_NINO, DE_TAX_ID, FR_NIR, ES_DNI})
_DIGIT = re.compile(r"[0-9]")
# three digits in a row (SSN, tax ID and NIR patterns start so; a card is 13-19 digits in a row or
# in groups of at least 3; a DNI has 7 or 8);
_NEEDS_3_DIGITS = frozenset({CREDIT_CARD, US_SSN, DE_TAX_ID, FR_NIR, ES_DNI})
_3_DIGITS = re.compile(r"[0-9]{3}")
# seven digits in a row;
_NEEDS_7_DIGITS = frozenset({ES_DNI})
_7_DIGITS = re.compile(r"[0-9]{7}")
# nine digits, one space or hyphen at most between two (an SSN has 9, a tax ID 11, a card 13-19).
_NEEDS_9_DIGITS = frozenset({CREDIT_CARD, US_SSN, DE_TAX_ID})
_9_DIGITS = re.compile(r"[0-9](?:[ -]?[0-9]){8}")
# eight digits, one space at most between two (a NIR ends in "123 456 78" or "12345678").
_NEEDS_8_SPACED_DIGITS = frozenset({FR_NIR})
_8_SPACED_DIGITS = re.compile(r"[0-9](?: ?[0-9]){7}")
# two capitals, then a digit, a space between them at most (IBAN "DE89", NINO "AB 12").
_NEEDS_CAPS_DIGIT = frozenset({IBAN, UK_NINO})
_CAPS_DIGIT = re.compile(r"[A-Z]{2} ?[0-9]")
_GATES: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (_7_DIGITS, _NEEDS_7_DIGITS),
    (_9_DIGITS, _NEEDS_9_DIGITS),
    (_8_SPACED_DIGITS, _NEEDS_8_SPACED_DIGITS),
    (_CAPS_DIGIT, _NEEDS_CAPS_DIGIT),
)
_ALL_IN_ORDER = tuple(sorted(ALL_KINDS))


def detect(text: str, *, kinds: Iterable[str] | None = None) -> list[Finding]:
    """Every PII span of ``text`` of the given ``kinds`` (all by default), non-overlapping, by start."""
    if kinds is None:
        order = _ALL_IN_ORDER
    else:
        wanted = frozenset(kinds)
        unknown = wanted - ALL_KINDS
        if unknown:
            raise ValueError(f"unknown PII kinds: {sorted(unknown)}")
        order = tuple(sorted(wanted))
    if not text:
        return []
    impossible: frozenset[str] | set[str]
    if _DIGIT.search(text) is None:
        impossible = _NEEDS_DIGIT
    elif _3_DIGITS.search(text) is None:
        impossible = _NEEDS_3_DIGITS if _CAPS_DIGIT.search(text) else _NEEDS_3_DIGITS | _NEEDS_CAPS_DIGIT
    else:
        impossible = set()
        for pattern, needing in _GATES:
            if pattern.search(text) is None:
                impossible |= needing
    # Detectors run in kind order and findings keep that order: resolve() breaks exact ties by it.
    raw = [
        Finding(kind, start, end, text[start:end], confidence)
        for wanted_kind in order
        if wanted_kind not in impossible
        for kind, start, end, confidence in DETECTORS[wanted_kind](text)
    ]
    if not raw:
        return raw
    found = resolve(raw)
    # A value detected once is masked wherever else it occurs in the text, even where its context
    # alone would not have been enough (glued to other characters, say).
    seen = {f.text: f for f in found if f.kind != PERSON_NAME}
    extra = []
    for value, f in seen.items():
        start = text.find(value)
        while start != -1:
            if start != f.start:
                extra.append(Finding(f.kind, start, start + len(value), value, round(f.confidence - 0.05, 2)))
            start = text.find(value, start + 1)
    return resolve(found + extra) if extra else found


# ---------------------------------------------------------------------------- Amazon Comprehend

# Comprehend DetectPiiEntities types -> our kinds; any other type keeps Comprehend's name.
COMPREHEND_KINDS: dict[str, str] = {
    "EMAIL": EMAIL,
    "PHONE": PHONE,
    "CREDIT_DEBIT_NUMBER": CREDIT_CARD,
    "IP_ADDRESS": IP_ADDRESS,
    "SSN": US_SSN,
    "NAME": PERSON_NAME,
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER": IBAN,
    "UK_NATIONAL_INSURANCE_NUMBER": UK_NINO,
}
# DetectPiiEntities accepts up to 100 KB of UTF-8 per request.
COMPREHEND_MAX_BYTES = 100_000
_SEPARATOR = "\n\n"


# Comprehend bills DetectPiiEntities in units of 100 characters, at least 3 units per request, and
# accepts English and Spanish text.
COMPREHEND_CHARS_PER_UNIT = 100
COMPREHEND_MIN_UNITS = 3
COMPREHEND_USD_PER_UNIT = 0.0001
COMPREHEND_LANGUAGES = ("en", "es")


@dataclass
class ComprehendOutcome:
    """What one :func:`comprehend_findings` call found and cost.

    ``findings[i]`` belongs to ``texts[i]``; ``errors[i]`` is set when a request carrying (a piece of)
    that text failed, in which case its findings are incomplete and the text must not be trusted as
    masked. ``units`` is what Comprehend bills (100 characters, at least 3 per request)."""

    findings: list[list[Finding]]
    errors: list[str | None]
    requests: int = 0
    characters: int = 0
    units: int = 0

    @property
    def cost_usd(self) -> float:
        return round(self.units * COMPREHEND_USD_PER_UNIT, 6)


def comprehend_findings(
    texts: Sequence[str],
    *,
    client: Any,
    language_code: str = "en",
    min_score: float = 0.5,
    max_bytes: int = COMPREHEND_MAX_BYTES,
) -> ComprehendOutcome:
    """Amazon Comprehend ``DetectPiiEntities`` over ``texts``, with per-text errors instead of raising.

    Short texts are packed into as few requests as the 100 KB per-request limit allows (joined by a
    blank line, offsets mapped back), so a file of many small free-text fields costs a handful of
    calls, not one per field; a single text longer than the limit is sent in pieces cut at whitespace.
    A failed request (after botocore's retries) marks every text it carried as failed and the next
    requests still run: one throttled batch does not fail the whole file.
    """
    outcome = ComprehendOutcome([[] for _ in texts], [None for _ in texts])
    batch: list[tuple[int, int, str]] = []  # (text index, offset of the piece within that text, piece)
    size = 0

    def flush() -> None:
        nonlocal size
        if not batch:
            return
        joined = _SEPARATOR.join(piece for _, _, piece in batch)
        outcome.requests += 1
        try:
            response = client.detect_pii_entities(Text=joined, LanguageCode=language_code)
        except Exception as exc:  # botocore ClientError, throttling after retries, timeouts
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            for index, _, _ in batch:
                outcome.errors[index] = f"Amazon Comprehend DetectPiiEntities failed: {code}"
            batch.clear()
            size = 0
            return
        # Billed only when answered: 100-character units, at least 3 per request.
        outcome.characters += len(joined)
        outcome.units += max(COMPREHEND_MIN_UNITS, -(-len(joined) // COMPREHEND_CHARS_PER_UNIT))
        starts, pos = [], 0
        for _, _, piece in batch:
            starts.append(pos)
            pos += len(piece) + len(_SEPARATOR)
        for entity in response.get("Entities", []):
            score = float(entity.get("Score", 0.0))
            begin, end = int(entity["BeginOffset"]), int(entity["EndOffset"])
            if score < min_score:
                continue
            for (index, offset, piece), piece_start in zip(batch, starts, strict=True):
                if piece_start <= begin and end <= piece_start + len(piece):
                    s, e = begin - piece_start + offset, end - piece_start + offset
                    kind = COMPREHEND_KINDS.get(entity["Type"], entity["Type"])
                    outcome.findings[index].append(Finding(kind, s, e, texts[index][s:e], score))
                    break
        batch.clear()
        size = 0

    for index, text in enumerate(texts):
        for offset, piece in _pieces(text, max_bytes):
            cost = len(piece.encode("utf-8")) + len(_SEPARATOR)
            if size + cost > max_bytes:
                flush()
            batch.append((index, offset, piece))
            size += cost
    flush()
    outcome.findings = [resolve(found) for found in outcome.findings]
    return outcome


def detect_comprehend(
    texts: Sequence[str],
    *,
    client: Any,
    language_code: str = "en",
    min_score: float = 0.5,
    max_bytes: int = COMPREHEND_MAX_BYTES,
) -> list[list[Finding]]:
    """One list of Comprehend findings per text (see :func:`comprehend_findings`); raises
    ``RuntimeError`` if any request failed."""
    outcome = comprehend_findings(
        texts, client=client, language_code=language_code, min_score=min_score, max_bytes=max_bytes
    )
    failed = next((e for e in outcome.errors if e), None)
    if failed:
        raise RuntimeError(failed)
    return outcome.findings


def _pieces(text: str, max_bytes: int) -> Iterator[tuple[int, str]]:
    """``text`` in pieces of at most ``max_bytes`` UTF-8 bytes (minus a separator), with their offsets."""
    if not text.strip():
        return
    limit = max_bytes - len(_SEPARATOR)
    start = 0
    while start < len(text):
        end = min(len(text), start + limit)
        while len(text[start:end].encode("utf-8")) > limit:
            end = start + (end - start) * 3 // 4
        if end < len(text):  # cut at whitespace so a value is not split in two
            cut = text.rfind(" ", start + 1, end)
            end = cut if cut > start else end
        yield start, text[start:end]
        start = end
