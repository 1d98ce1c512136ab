"""Detectors for content filters: PII, secrets, prompt injection, each a function from text to findings.

PII is found by candidate patterns confirmed with checksums and numbering plans from well-kept
libraries: phone numbers with Google's libphonenumber (`phonenumbers`), payment cards with the Luhn
check, IBANs and national ids with `python-stdnum` (both imported on first use: the ``filters`` extra).
Secrets are the token formats providers publish (AWS, GitHub, OpenAI, Anthropic, Slack, Stripe,
Google, JWTs, PEM private keys) plus assignments of long high-entropy values to secret-looking names.
Injection heuristics are the phrasings of published prompt-injection corpora.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from ..exceptions import ConfigError

__all__ = ["PII_KINDS", "Finding", "find_injection", "find_pii", "find_secrets", "redact"]

PII_KINDS = ("email", "phone", "card", "iban", "national_id")


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: its kind (``email``, ``secret``, ``injection``, ...), where it is, and what it is."""

    kind: str
    start: int
    end: int
    detail: str = ""


@cache
def _libs() -> tuple[ModuleType, dict[str, ModuleType]]:
    try:
        import phonenumbers
        from stdnum import iban, luhn
        from stdnum.es import dni
        from stdnum.fr import nir
        from stdnum.it import codicefiscale
        from stdnum.us import ssn
    except ImportError as exc:  # pragma: no cover - the extra is in dev
        raise ConfigError(
            f"PII detection needs the 'filters' extra ({exc.name} is missing): pip install 'keel[filters]'"
        ) from exc
    return phonenumbers, {"iban": iban, "luhn": luhn, "ssn": ssn, "dni": dni, "nir": nir, "cf": codicefiscale}


EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|22)|35)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
DNI = re.compile(r"\b\d{8}-?[A-Z]\b")
NIR = re.compile(r"\b[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b")
CODICE_FISCALE = re.compile(r"\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b")
NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")


def find_pii(
    text: str, kinds: Iterable[str] = PII_KINDS, regions: Sequence[str] = ("US", "GB", "DE", "FR")
) -> list[Finding]:
    """Emails, phone numbers, payment cards (Luhn), IBANs (checksum) and national ids in `text`.

    National ids: US SSN, UK National Insurance number, Spanish DNI, French NIR, Italian codice
    fiscale, each confirmed by its format's check where it has one.
    """
    wanted = set(kinds)
    phonenumbers, std = _libs()
    found: list[Finding] = []
    if "email" in wanted:
        found += [Finding("email", m.start(), m.end()) for m in EMAIL.finditer(text)]
    if "card" in wanted:
        for m in CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and CARD_PREFIX.match(digits) and std["luhn"].is_valid(digits):
                found.append(Finding("card", m.start(), m.end()))
    if "iban" in wanted:
        found += [Finding("iban", m.start(), m.end()) for m in IBAN.finditer(text) if std["iban"].is_valid(m.group())]
    if "national_id" in wanted:
        checks: list[tuple[re.Pattern[str], Callable[[str], bool], str]] = [
            (SSN, std["ssn"].is_valid, "US SSN"),
            (DNI, std["dni"].is_valid, "ES DNI"),
            (NIR, std["nir"].is_valid, "FR NIR"),
            (CODICE_FISCALE, std["cf"].is_valid, "IT codice fiscale"),
            (NINO, lambda _: True, "UK NINO"),
        ]
        for pattern, valid, name in checks:
            found += [
                Finding("national_id", m.start(), m.end(), name) for m in pattern.finditer(text) if valid(m.group())
            ]
    if "phone" in wanted and sum(c.isdigit() for c in text) >= 6:  # no numbering plan has shorter numbers
        taken = [(f.start, f.end) for f in found]
        for region in regions:
            for m in phonenumbers.PhoneNumberMatcher(text, region):
                glued = m.start > 0 and (text[m.start - 1].isalnum() or text[m.start - 1] in "-_/")
                if not glued and not any(s < m.end and m.start < e for s, e in taken):  # not part of an id
                    taken.append((m.start, m.end))
                    found.append(Finding("phone", m.start, m.end, region))
    return _dedupe(found)


SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Stripe key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    (
        "private key",
        re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)"),
    ),
    ("password in a URL", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s@/]{3,}@[^\s/]+")),
]
ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:[a-z0-9]+[_-])*(?:api[_-]?key|secret(?:[_-]?(?:access[_-]?)?key)?|access[_-]?token|auth[_-]?token|"
    r"token|password|passwd|pwd)"
    r"\b['\"]?\s*[:=]\s*['\"]?([^\s'\"]{12,})"
)


def _entropy(value: str) -> float:
    counts = {c: value.count(c) for c in set(value)}
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def find_secrets(text: str) -> list[Finding]:
    """API keys, tokens, private keys and passwords in `text`."""
    found = [Finding("secret", m.start(), m.end(), name) for name, p in SECRET_PATTERNS for m in p.finditer(text)]
    for m in ASSIGNED_SECRET.finditer(text):
        value = m.group(1)
        if _entropy(value) >= 3.0 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            found.append(Finding("secret", m.start(1), m.end(1), "assigned secret"))
    return _dedupe(found)


INJECTION_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in [
        (
            "override of earlier instructions",
            r"\b(?:ignore|disregard|forget|override|skip)\b[^.\n]{0,30}\b(?:previous|prior|above|earlier|preceding|"
            r"all|any|your|the|system)\b[^.\n]{0,20}\b(?:instructions?|prompts?|rules|directions|guidelines|context)",
        ),
        ("new instructions", r"\b(?:new|updated|real|actual|revised)\s+(?:system\s+)?instructions?\s*[:\-]"),
        (
            "override of everything said before",
            r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\b[^.\n]{0,25}"
            r"\b(?:you were told|you have been told|said before|before this|above|so far)",
        ),
        ("override mode", r"\b(?:system|admin|developer|god)\s+(?:override|mode)\b|\bjailbreak"),
        (
            "order addressed to the assistant",
            r"\b(?:assistant|ai|chatbot|agent|llm|model)\s*[,:]\s*(?:please\s+)?(?:now\s+)?"
            r"(?:approve|delete|send|transfer|refund|grant|ignore|execute|run|call|reveal|forward|disable|email)\b",
        ),
        (
            "secrets requested from the assistant",
            r"\b(?:include|share|send|reveal|print|output|list|append)\b[^.\n]{0,40}\b(?:saved\s+|stored\s+)?"
            r"(?:passwords|credentials|api keys|secrets|access tokens|private keys)\b",
        ),
        (
            "role reassignment",
            r"\b(?:you are now (?:in (?:developer|god|admin|dan) mode|no longer|free (?:from|of)|unrestricted|"
            r"jailbroken|dan\b|an? (?:unrestricted|unfiltered|jailbroken))|from now on,? you|"
            r"pretend (?:to be|you are)|act as (?:an? )?(?:dan|unrestricted|jailbroken))",
        ),
        (
            "system prompt probe",
            r"\b(?:reveal|print|show|repeat|output|leak)\b[^.\n]{0,25}"
            r"\b(?:system prompt|your instructions|hidden instructions|initial prompt)",
        ),
        (
            "chat template tokens",
            r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(?:system|instruction)s?\b",
        ),
        (
            "message to the assistant",
            r"\b(?:note|message|attention|important|instruction)s?\s+(?:to|for)\s+(?:the\s+)?(?:ai|assistant|agent|model|llm|chatbot)\b",
        ),
        (
            "concealment",
            r"\b(?:do not|don't|never)\s+(?:tell|inform|mention|reveal)\b[^.\n]{0,20}"
            r"\b(?:the )?(?:user|customer|human)\b",
        ),
        (
            "exfiltration",
            r"\b(?:send|forward|email|upload|post|transfer)\b[^.\n]{0,40}\b(?:all|every|the)\b[^.\n]{0,20}\b(?:data|records|emails|passwords|credentials|funds|money|history|conversation)\b[^.\n]{0,30}\bto\b",
        ),
        (
            "tool coercion",
            r"\b(?:immediately|now|must)\s+(?:call|invoke|run|use|execute)\s+(?:the\s+)?[`'\"]?[a-z_]+[`'\"]?\s+(?:tool|function)\b",
        ),
    ]
]


def find_injection(text: str) -> list[Finding]:
    """Phrasings typical of prompt injection hidden in data (a web page, an email, a document)."""
    return _dedupe(
        [Finding("injection", m.start(), m.end(), name) for name, p in INJECTION_PATTERNS for m in p.finditer(text)]
    )


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with each finding replaced by ``[REDACTED <KIND>]``."""
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        out += [text[pos : f.start], f"[REDACTED {f.kind.upper()}]"]
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def _dedupe(found: list[Finding]) -> list[Finding]:
    """Drop findings inside a longer one."""
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue
        kept.append(f)
    return kept


def describe(findings: Iterable[Finding]) -> str:
    """A short summary: ``2 email, 1 card``."""
    counts: dict[str, int] = {}
    for f in findings:
        label = f.detail if f.kind in ("secret", "injection", "national_id") and f.detail else f.kind
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in counts.items())


def as_findings(value: Any, kind: str) -> list[Finding]:
    """Normalise what a custom check returned: None/False (clean), True, a string, or findings."""
    if value is None or value is False:
        return []
    if value is True:
        return [Finding(kind, 0, 0, kind)]
    if isinstance(value, str):
        return [Finding(kind, 0, 0, value)]
    if isinstance(value, Finding):
        return [value]
    return [v for v in value if isinstance(v, Finding)]
