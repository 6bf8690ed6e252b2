"""Find personal data (emails, phone numbers, payment cards, IPv4 addresses) in training text.

Validation runs this on every record of files up to hundreds of MB, so it is built for speed:
- emails are only looked for around an '@' (`str.find` is a memchr-fast scan);
- `may_hold_pii` rules a text out on its UTF-8 bytes with memchr-fast tests, one
  literal-prefixed regex and a `bytes.translate` (shared with validation's near-duplicate
  key), which clears almost every record; only the rest get the regex scan, where one
  "digit span" pattern finds candidates and the precise patterns run only on those spans.
It also avoids the usual false positives of a naive scan: plain digit runs (ids, unix
timestamps, cost_micros, prices) are not phone numbers unless written like one (a leading '+'
or US 3-3-4 grouping), and a card number must pass the Luhn check and start like a real issuer.
Values are masked before they leave this module, so reports never repeat the personal data.
"""

import re
import string
from dataclasses import dataclass
from typing import Literal

PiiKind = Literal["email", "phone", "card", "ipv4"]

_EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}$")
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])")
# A run of digits with the separators numbers are written with; at least 7 characters (1.1.1.1).
# Explicit ASCII ranges compile to a bitmap, which the regex engine tests fast.
_DIGIT_SPAN = re.compile(r"[+(0-9][0-9 .()-]{5,}[0-9]")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)", re.ASCII)
# Not after a '.' or ',' with digits: the digits of 275.43397884615385 are a fraction, not a card.
_CARD = re.compile(
    r"(?<![\d.,-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})(?!\d|[.,]\d)", re.ASCII
)
_US_PHONE = re.compile(r"(?<![\d+])(?:\+?1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])\d{3}[ .-]\d{4}(?![\d-])", re.ASCII)
_INTL_PHONE = re.compile(r"(?<![\d+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\d-])", re.ASCII)
_NON_DIGITS = re.compile(r"\D", re.ASCII)
# Prefilter tables (see may_hold_pii). The digit-dot regex starts with a literal, so the engine
# jumps from '.' to '.' instead of testing every character.
_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_PUNCTUATION_AND_SPACE = (string.punctuation + string.whitespace).encode()
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_DIGIT_DOT_DIGIT = re.compile(rb"\.(?<=[0-9]\.)[0-9]")


@dataclass(frozen=True, slots=True)
class PiiHit:
    """One piece of personal data found; `value_masked` is safe to show in a report."""

    kind: PiiKind
    value_masked: str


def find_pii(text: str) -> list[PiiHit]:
    """Every email, phone number, Luhn-valid card number and IPv4 address in `text`, masked."""
    encoded = text.encode()
    return scan_pii(text) if may_hold_pii(encoded, squeeze(encoded)) else []


def squeeze(encoded: bytes) -> bytes:
    """`encoded` with ASCII letters lowercased and ASCII punctuation and whitespace removed.

    Numbers written with separators become plain digit runs here, which is what the prefilter
    needs; validation reuses the result as its near-duplicate key, so it costs one pass for both.
    """
    return encoded.translate(_LOWER, _PUNCTUATION_AND_SPACE)


def may_hold_pii(encoded: bytes, squeezed: bytes) -> bool:
    """False when the text cannot hold any PII `scan_pii` finds; decided with a few C-speed scans.

    Every email has '@' and every international phone '+'. Every IPv4, US phone and card
    number leaves a run of 4+ digits in `squeezed` (see `squeeze`); phones and cards a run of
    10+, IPv4 a digit '.' digit in `encoded`. Byte tests use ints (`64 in encoded`): a bytes
    needle first fails an int conversion, which costs more than the memchr itself.
    """
    if 64 in encoded or 43 in encoded:
        return True
    if squeezed.isalpha():
        return False
    shape = squeezed.translate(_DIGITS_TO_ZERO)
    if shape.find(b"0000") < 0:
        return False
    return shape.find(b"0000000000") >= 0 or _DIGIT_DOT_DIGIT.search(encoded) is not None


def scan_pii(text: str) -> list[PiiHit]:
    """The full search, without the prefilter: emails around each '@', numbers in digit spans."""
    hits = _emails(text) if "@" in text else []
    for span in _DIGIT_SPAN.finditer(text):
        hits.extend(_numbers(text, span.start(), span.end()))
    return hits


def luhn_valid(digits: str) -> bool:
    """The checksum every payment card number carries; random 16-digit numbers fail it 9 times in 10."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _emails(text: str) -> list[PiiHit]:
    hits = []
    at = text.find("@")
    while at != -1:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        name = local.group().lstrip(".") if local else ""
        if name and domain:
            hits.append(PiiHit("email", f"{name[0]}***@{domain.group()}"))
        at = text.find("@", at + 1)
    return hits


def _numbers(text: str, start: int, end: int) -> list[PiiHit]:
    """Classify one digit span: IPv4 first, then cards, then phones, never counting a digit twice."""
    if start and text[start - 1] == "+":
        start -= 1
    hits: list[PiiHit] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in (("ipv4", _IPV4), ("card", _CARD), ("phone", _US_PHONE), ("phone", _INTL_PHONE)):
        for match in pattern.finditer(text, start, end):
            if any(a < match.end() and match.start() < b for a, b in taken):
                continue
            masked = _classify(kind, match.group())
            if masked:
                taken.append(match.span())
                hits.append(PiiHit(kind, masked))
    return hits


def _classify(kind: str, value: str) -> str | None:
    """The masked value when `value` really is a `kind`, else None."""
    if kind == "ipv4":
        return ".".join(value.split(".")[:2]) + ".*.*"
    digits = _NON_DIGITS.sub("", value)
    if kind == "card":
        return _mask(value, keep=4) if _issuer_prefix(digits) and luhn_valid(digits) else None
    # Real numbers have 8-13 digits with the country code; longer '+' runs are arithmetic.
    return _mask(value, keep=2) if 8 <= len(digits) <= 13 else None


def _issuer_prefix(digits: str) -> bool:
    """Visa 4, Mastercard 51-55 / 2221-2720, Amex/Diners/JCB 3x, Discover/UnionPay/Maestro 5x-6x."""
    return digits[0] in "3456" or (digits[0] == "2" and 2221 <= int(digits[:4]) <= 2720)


def _mask(value: str, keep: int) -> str:
    """Star every digit but the last `keep`, keeping the separators: **** **** **** 1111."""
    remaining = sum(char.isdigit() for char in value) - keep
    out = []
    for char in value:
        if char.isdigit() and remaining > 0:
            out.append("*")
            remaining -= 1
        else:
            out.append(char)
    return "".join(out)
