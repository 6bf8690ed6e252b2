"""Find personal data (emails, phone numbers, payment cards, IPv4 addresses) in training text.

Validation runs this on every record of files up to hundreds of MB, so it is built for speed:
- emails are only looked for around an '@' (`str.find` is a memchr-fast scan);
- `pii_candidates` rules texts out a whole batch at a time: the batch is joined and searched
  with `find` (memchr-fast), one literal-prefixed regex and one `bytes.translate`, on the
  "squeezed" form validation already makes for its near-duplicate key; only the few texts
  left get the regex scan, where one "digit span" pattern finds candidates and the precise
  patterns run only on those spans.
It also avoids the usual false positives of a naive scan: plain digit runs (ids, unix
timestamps, cost_micros, prices) are not phone numbers unless written like one (a leading '+'
or US 3-3-4 grouping), and a card number must pass the Luhn check and start like a real issuer.
What is reserved for examples is nobody's data: emails at RFC 2606 / 6761 names (example.com,
.org, .net, *.example, *.test, *.invalid, *.localhost), the fictional 555-0100..0199 numbers and
area code 555 are skipped, as are loopback and RFC 5737 documentation IPv4 addresses, and so are a URL's user-info (ftp://user:pass@host is not an email) and numbers
that are operands of arithmetic (4532015112830366 + 12). Each hit names the rule that found it.
Values are masked before they leave this module, so reports never repeat the personal data.
"""

import ipaddress
import re
import string
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import AnyStr, Literal, NamedTuple

import numpy as np

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
# Prefilter (see pii_candidates).
SEPARATOR = "\x1e"  # joins a batch; a boundary no match can run across
_SEPARATOR_BYTES = SEPARATOR.encode()
_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_PUNCTUATION_AND_SPACE = (string.punctuation + string.whitespace).encode()
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
# Starts with a literal, so the engine jumps from '.' to '.' instead of testing every character.
_DOTTED_QUAD = re.compile(r"\.(?<=[0-9]\.)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")


RULES: dict[str, str] = {
    "email": "email address",
    "us_phone": "US phone number (3-3-4 digits)",
    "intl_phone": "international phone number (+country code)",
    "card": "payment card number (issuer prefix and Luhn checksum)",
    "ipv4": "IPv4 address",
}
RESERVED_DOMAINS = ("example.com", "example.net", "example.org", "example", "test", "invalid", "localhost")
_URL_BEFORE_AT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@]*$")
_OPERATORS = "+-*/×÷=^"
_DOCUMENTATION_NETS = tuple(ipaddress.IPv4Network(net) for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
# Sums and products of long numbers: a text that has one is doing arithmetic, and its plain digit runs are numbers.
_LONG_ARITHMETIC = re.compile(r"\d{3,}\s*[+*×÷/^]\s*\d{3,}")


@dataclass(frozen=True, slots=True)
class PiiHit:
    """One piece of personal data found; `value_masked` is safe to show in a report, `rule` says what found it."""

    kind: PiiKind
    value_masked: str
    rule: str = field(default="", compare=False)

    @property
    def description(self) -> str:
        return f"{self.kind} {self.value_masked} (rule: {RULES[self.rule]})"


class TextBatch(NamedTuple):
    """A batch of texts prepared once for the prefilter (validation reuses `squeezed` as its near-duplicate key)."""

    texts: list[str]
    lengths: np.ndarray  # len() of each text
    joined: str  # SEPARATOR.join(texts)
    squeezed_joined: bytes  # joined as UTF-8 (casefolded unless ASCII), lowercased, without punctuation or whitespace
    squeezed: list[bytes]  # squeezed_joined split back into one part per text


def find_pii(text: str) -> list[PiiHit]:
    """Every email, phone number, Luhn-valid card number and IPv4 address in `text`, masked."""
    return scan_pii(text) if pii_candidates(text_batch([text])) else []


def text_batch(texts: list[str]) -> TextBatch:
    """Join and squeeze `texts` at once: one encode, one translate and one split for the batch.

    Squeezing (ASCII letters lowercased, ASCII punctuation and whitespace removed) turns numbers
    written with separators into plain digit runs, which the prefilter needs. A SEPARATOR inside
    a text would split it in two, so it becomes a space first.
    """
    joined = SEPARATOR.join(texts)
    data = joined.encode() if joined.isascii() else joined.casefold().encode()
    squeezed_joined = data.translate(_LOWER, _PUNCTUATION_AND_SPACE)
    squeezed = squeezed_joined.split(_SEPARATOR_BYTES)
    if len(squeezed) != len(texts):
        return text_batch([text.replace(SEPARATOR, " ") for text in texts])
    return TextBatch(texts, _lengths(texts), joined, squeezed_joined, squeezed)


def pii_candidates(batch: TextBatch) -> list[int]:
    """Indexes of the batch's texts that may hold PII `scan_pii` finds; the rest certainly hold none.

    Every email has '@', every international phone '+' and every IPv4 address four dotted
    digit groups; every US phone and card number leaves a run of 10+ digits once squeezed (its
    separators are punctuation or spaces). Each test is one C-speed scan over the whole batch.
    """
    joined, ends = batch.joined, _ends(batch.lengths)
    found = {
        *_rows_with(joined, "@", ends),
        *_rows_with(joined, "+", ends),
        *_rows_at(ends, lambda start: match.start() if (match := _DOTTED_QUAD.search(joined, start)) else -1),
    }
    found.update(_rows_with_long_numbers(batch.squeezed_joined.translate(_DIGITS_TO_ZERO)))
    return sorted(found)


def scan_pii(text: str) -> list[PiiHit]:
    """The full search, without the prefilter: emails around each '@', numbers in digit spans."""
    hits = _emails(text) if "@" in text else []
    for span in _DIGIT_SPAN.finditer(text):
        hits.extend(_numbers(text, span.start(), span.end()))
    return hits


def _lengths(items: Sequence[Sized]) -> np.ndarray:
    return np.fromiter(map(len, items), np.int64, len(items))


def _ends(lengths: np.ndarray) -> list[int]:
    """Where each part ends in SEPARATOR.join(parts), its separator included."""
    return np.cumsum(lengths + 1).tolist()


def _rows_with(haystack: AnyStr, needle: AnyStr, ends: list[int]) -> Iterator[int]:
    """Each row of a SEPARATOR-joined `haystack` that holds `needle`, once; row i ends at ends[i]."""
    return _rows_at(ends, lambda start: haystack.find(needle, start))


def _rows_with_long_numbers(shape: bytes) -> Iterator[int]:
    """Rows of a zeroed, squeezed batch holding 10+ digits in a row, once each.

    Such rows are rare, so each is found by counting the separators before it: cheaper than
    measuring every row to bisect.
    """
    row = counted = 0
    at = shape.find(b"0000000000")
    while at >= 0:
        row += shape.count(_SEPARATOR_BYTES, counted, at)
        yield row
        counted = shape.find(_SEPARATOR_BYTES, at) + 1
        if not counted:
            return
        row += 1
        at = shape.find(b"0000000000", counted)


def _rows_at(ends: list[int], next_hit: Callable[[int], int]) -> Iterator[int]:
    """Each row holding a hit, once: after a hit, the search resumes at the next row."""
    at = next_hit(0)
    while at >= 0:
        row = bisect_right(ends, at)
        yield row
        at = next_hit(ends[row]) if row + 1 < len(ends) else -1


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
        if name and domain and not reserved_domain(domain.group()) and not _url_user_info(text, at):
            hits.append(PiiHit("email", f"{name[0]}***@{domain.group()}", "email"))
        at = text.find("@", at + 1)
    return hits


def reserved_domain(domain: str) -> bool:
    """A name RFC 2606 / RFC 6761 reserve for documentation and tests: no one's mailbox."""
    name = domain.lower().rstrip(".")
    return any(name == reserved or name.endswith("." + reserved) for reserved in RESERVED_DOMAINS)


def _url_user_info(text: str, at: int) -> bool:
    """The '@' ends the user-info of a URL (scheme://user:password@host), not an email's local part."""
    return _URL_BEFORE_AT.search(text, max(0, at - 200), at) is not None


def _in_arithmetic(text: str, start: int, end: int) -> bool:
    """The number is an operand (an operator with a number or bracket on its other side, before or after it), or a
    plain digit run in a text that does arithmetic on long numbers (the result of "256626720691 + ...")."""
    if text[start:end].isdigit() and _LONG_ARITHMETIC.search(text):
        return True
    before = text[max(0, start - 16) : start].rstrip()
    if before[-1:] and before[-1] in _OPERATORS and before[:-1].rstrip()[-1:] in (*"0123456789", ")"):
        return True
    after = text[end : end + 16].lstrip()
    return bool(after[:1]) and after[0] in _OPERATORS and after[1:].lstrip()[:1] in (*"0123456789", "(")


def _numbers(text: str, start: int, end: int) -> list[PiiHit]:
    """Classify one digit span: IPv4 first, then cards, then phones, never counting a digit twice."""
    if start and text[start - 1] == "+":
        start -= 1
    hits: list[PiiHit] = []
    taken: list[tuple[int, int]] = []
    for rule, pattern in _patterns_for(text[start:end]):
        for match in pattern.finditer(text, start, end):
            if any(a < match.end() and match.start() < b for a, b in taken):
                continue
            kind: PiiKind = "phone" if rule.endswith("phone") else rule  # type: ignore[assignment]
            masked = _classify(kind, match.group())
            if masked and kind != "ipv4" and _in_arithmetic(text, *match.span()):
                masked = None
            if masked:
                taken.append(match.span())
                hits.append(PiiHit(kind, masked, rule))
    return hits


def _patterns_for(span: str) -> list[tuple[str, re.Pattern[str]]]:
    """The rules the span has enough digits and dots for (most spans are years or prices), by name."""
    digits = sum(map(str.isdigit, span))
    candidates: list[tuple[str, re.Pattern[str]]] = [("ipv4", _IPV4)] if span.count(".") >= 3 else []
    if digits >= 13:
        candidates.append(("card", _CARD))
    if digits >= 10:
        candidates.append(("us_phone", _US_PHONE))
    if digits >= 8 and "+" in span:
        candidates.append(("intl_phone", _INTL_PHONE))
    return candidates


def _classify(kind: str, value: str) -> str | None:
    """The masked value when `value` really is a `kind`, else None."""
    if kind == "ipv4":
        return None if _reserved_ipv4(value) else ".".join(value.split(".")[:2]) + ".*.*"
    digits = _NON_DIGITS.sub("", value)
    if kind == "card":
        return _mask(value, keep=4) if _issuer_prefix(digits) and luhn_valid(digits) else None
    # Real numbers have 8-13 digits with the country code; longer '+' runs are arithmetic.
    if not 8 <= len(digits) <= 13 or _fictional_nanp(digits):
        return None
    return _mask(value, keep=2)


def _reserved_ipv4(value: str) -> bool:
    """Loopback, unspecified and the RFC 5737 documentation networks: addresses of no one's machine."""
    address = ipaddress.IPv4Address(value)
    return address.is_loopback or address.is_unspecified or any(address in net for net in _DOCUMENTATION_NETS)


def _fictional_nanp(digits: str) -> bool:
    """555-0100 to 555-0199 in any North American area code are reserved for fiction and examples, and area
    code 555 is assigned to no one: (555) 123-4567 is a made-up number."""
    local = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
    return len(local) == 10 and (local[:3] == "555" or (local[3:6] == "555" and local[6:8] == "01"))


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
