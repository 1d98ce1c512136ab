"""Detectors for content filters: PII, secrets, prompt injection, each a function from text to findings.

PII is found by candidate patterns confirmed with checksums and numbering plans from well-kept
libraries: phone numbers with Google's libphonenumber (`phonenumbers`), payment cards with the Luhn
check, IBANs and national ids with `python-stdnum` (both imported on first use: the ``filters`` extra).
Secrets are the token formats providers publish (AWS, GitHub, OpenAI, Anthropic, Slack, Stripe,
Google, JWTs, PEM private keys) plus assignments of long high-entropy values to secret-looking names.
Injection heuristics (`_injection`) are the phrasings of injected instructions in sixteen languages,
matched in the text as written and as decoded (invisible characters, look-alike letters, entities,
URL escapes, digits for letters, base64).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from ..exceptions import ConfigError
from ._injection import NEGATABLE, PATTERNS, negated, readings

__all__ = ["PII_KINDS", "Finding", "find_injection", "find_pii", "find_secrets", "redact"]

PII_KINDS = ("email", "phone", "card", "iban", "national_id")
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL")
"""Regions whose national phone formats are recognised by default (``+`` numbers always are)."""


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
_AT = r"(?:\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+)"
SPOKEN_EMAIL = re.compile(
    r"(?i)(?<![\w.+-])[a-z0-9]+[._][a-z0-9._]*[a-z0-9]\s+at\s+[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b"
)
OBFUSCATED_EMAIL = re.compile(
    rf"(?i)(?<![\w.+-])[a-z0-9][a-z0-9._%+-]*(?:{_DOT}[a-z0-9._%+-]+)*{_AT}[a-z0-9-]+(?:(?:{_DOT}|\.)[a-z0-9-]+)*{_DOT}"
    r"[a-z]{2,24}\b"
)
CARD = re.compile(r"(?<![\d.-])(?:\d[ .-]?){12,18}\d(?![\d-]|\.\d)")
CARD_PREFIX = re.compile(r"^(?:4|5[0-9]|2[2-7]|3[47]|3[0689]|6|35)")
CARD_WORD = re.compile(r"(?i)(?:card|cc|karte|tarjeta|carte|carta|cartão|karta|kaart|visa|mastercard|amex)\W{0,12}$")
IBAN = re.compile(r"(?i)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
SSN_NAMED = re.compile(
    r"(?i)\b(?:ssn|social[ -]security(?:[ -](?:number|no\.?|num|#))?)\W{0,12}(?:is\W{1,3})?"
    r"(\d{3})[ .-]?(\d{2})[ .-]?(\d{4})\b"
)
DNI = re.compile(r"(?i)\b\d{8}-?[A-Z]\b")
NIR = re.compile(r"\b[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b")
CODICE_FISCALE = re.compile(r"\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b")
CODICE_FISCALE_NAMED = re.compile(r"(?i)(?<=codice fiscale)\W{1,4}[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b")
NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS, regions: Sequence[str] = PHONE_REGIONS) -> list[Finding]:
    """Emails, phone numbers, payment cards (Luhn), IBANs (checksum) and national ids in `text`.

    National ids: US SSN, UK National Insurance number, Spanish DNI, French NIR, Italian codice
    fiscale, each confirmed by its format's check where it has one.
    """
    wanted = set(kinds)
    phonenumbers, std = _libs()
    found: list[Finding] = []
    folded = _fold(text)
    if "email" in wanted:
        found += [Finding("email", m.start(), m.end()) for m in EMAIL.finditer(folded)]
        for pattern in (OBFUSCATED_EMAIL, SPOKEN_EMAIL):
            found += [Finding("email", m.start(), m.end(), "obfuscated") for m in pattern.finditer(folded)]
    if "card" in wanted:
        for m in CARD.finditer(folded):
            digits = re.sub(r"\D", "", m.group())
            before = folded[max(0, m.start() - 24) : m.start()]
            named = CARD_WORD.search(before) is not None
            if 13 <= len(digits) <= 19 and (named or CARD_PREFIX.match(digits)) and std["luhn"].is_valid(digits):
                found.append(Finding("card", m.start(), m.end()))
    if "iban" in wanted:
        # mod-97 over the country's format; national check digits are not required (banks' own are often unknown)
        for m in IBAN.finditer(folded):
            value = m.group()
            while len(value) >= 15:  # a case-blind match may run into the next words: drop them one by one
                if std["iban"].is_valid(value.upper(), check_country=False) and _iban_length_ok(std, value):
                    found.append(Finding("iban", m.start(), m.start() + len(value)))
                    break
                if " " not in value:
                    break
                value = value.rsplit(" ", 1)[0]
    if "national_id" in wanted:
        found += [  # named as an SSN: its format is enough (python-stdnum rejects well-known published ones)
            Finding("national_id", m.start(1), m.end(3), "US SSN")
            for m in SSN_NAMED.finditer(folded)
            if _ssn_format(*m.groups())
        ]
        checks: list[tuple[re.Pattern[str], Callable[[str], bool], str]] = [
            (SSN, std["ssn"].is_valid, "US SSN"),
            (DNI, lambda v: bool(std["dni"].is_valid(v.upper())), "ES DNI"),
            (NIR, std["nir"].is_valid, "FR NIR"),
            (CODICE_FISCALE, std["cf"].is_valid, "IT codice fiscale"),
            (CODICE_FISCALE_NAMED, lambda _: True, "IT codice fiscale"),  # named: its format is enough
            (NINO, lambda _: True, "UK NINO"),
        ]
        for pattern, valid, name in checks:
            found += [
                Finding("national_id", m.start(), m.end(), name) for m in pattern.finditer(folded) if valid(m.group())
            ]
    if "phone" in wanted and sum(c.isdigit() for c in text) >= 6:  # no numbering plan has shorter numbers
        taken = [(f.start, f.end) for f in found]
        possible = phonenumbers.Leniency.POSSIBLE
        for region in regions:
            matches = list(phonenumbers.PhoneNumberMatcher(folded, region))
            # an international number the numbering plan calls unassigned (a reserved range) is still a number
            matches += [
                m for m in phonenumbers.PhoneNumberMatcher(folded, region, leniency=possible) if m.raw_string[0] == "+"
            ]
            for m in matches:
                glued = m.start > 0 and (folded[m.start - 1].isalnum() or folded[m.start - 1] in "-_/.")
                named = ID_WORD.search(folded[max(0, m.start - 16) : m.start]) is not None
                if glued or named or DATED_ID.match(m.raw_string):
                    continue
                if not any(s < m.end and m.start < e for s, e in taken):  # not part of an id
                    taken.append((m.start, m.end))
                    found.append(Finding("phone", m.start, m.end, region))
    return _dedupe(found)


ID_WORD = re.compile(
    r"(?i)\b(?:invoice|order|ref(?:erence)?|ticket|tracking|build|version|serial|part|sku|id|no\.|nr\.?|#)\W{0,3}$"
)
DATED_ID = re.compile(r"^(?:19|20)\d{2}-\d{2}-\d{2,}")


def _fold(text: str) -> str:
    """`text` with full-width and other compatibility characters folded (``＠`` to ``@``), same length."""
    if text.isascii():
        return text
    out = []
    for c in text:
        folded = unicodedata.normalize("NFKC", c)
        out.append(folded if len(folded) == 1 else c)
    return "".join(out)


def _iban_length_ok(std: dict[str, ModuleType], value: str) -> bool:
    """Whether the IBAN has its country's format (python-stdnum's registry), national check digits aside."""
    compact = re.sub(r"\s", "", value).upper()
    try:
        std["iban"].validate(compact)
    except Exception as exc:  # InvalidComponent, InvalidChecksum: a national check digit we do not require
        return type(exc).__name__ in ("InvalidComponent", "InvalidChecksum")
    return True


def _ssn_format(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


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
    ("GitLab token", re.compile(r"\bgl(?:pat|dt|rt|ptt|soat|ft|imt|agent|oas)-[A-Za-z0-9_-]{20,}")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("SendGrid key", re.compile(r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}")),
    ("Azure storage key", re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey)\s*=\s*[A-Za-z0-9+/]{40,}={0,2}")),
    (
        "Azure or API key",
        re.compile(
            r"(?i)\b(?:azure|openai|cognitive|subscription|ocp-apim|api)[\w .-]{0,24}?(?:key|token)\W{0,4}"
            r"[0-9a-f]{32}\b"
        ),
    ),
    ("npm token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("PyPI token", re.compile(r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{40,}")),
    ("Twilio key", re.compile(r"\bSK[0-9a-f]{32}\b")),
    ("Mailgun key", re.compile(r"\bkey-[0-9a-f]{32}\b")),
    ("Shopify token", re.compile(r"\bshp(?:at|ss|ca|pa)_[0-9a-fA-F]{32}\b")),
    ("DigitalOcean token", re.compile(r"\bdo[opr]_v1_[0-9a-f]{64}\b")),
    ("Telegram bot token", re.compile(r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b")),
    ("Slack webhook", re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,}")),
    ("Google OAuth secret", re.compile(r"\bGOCSPX-[A-Za-z0-9_-]{28}\b")),
    ("Vault token", re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}")),
    ("Databricks token", re.compile(r"\bdapi[0-9a-f]{32}(?:-\d)?\b")),
    ("Grafana token", re.compile(r"\bgl(?:sa|c)_[A-Za-z0-9+/=_]{32,}")),
    ("New Relic key", re.compile(r"\bNR(?:AK|AA|II)-[A-Z0-9]{27}\b")),
    ("Linear key", re.compile(r"\blin_api_[A-Za-z0-9]{40}\b")),
    ("Postman key", re.compile(r"\bPMAK-[0-9a-f]{24}-[0-9a-f]{34}\b")),
    ("Doppler token", re.compile(r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}")),
    ("age secret key", re.compile(r"\bAGE-SECRET-KEY-1[A-Z0-9]{58}\b")),
    ("Square token", re.compile(r"\b(?:EAAA[A-Za-z0-9_-]{60}|sq0(?:atp|csp)-[A-Za-z0-9_-]{22,})")),
    ("Atlassian token", re.compile(r"\bATATT3[A-Za-z0-9_=-]{50,}")),
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


def find_injection(text: str) -> list[Finding]:
    """Phrasings typical of prompt injection hidden in data (a web page, an email, a document).

    The text is read as written and decoded (`_injection.readings`); a match found only in a decoded
    reading covers the whole text and says how it was hidden.
    """
    found: list[Finding] = []
    for how, reading in readings(text):
        for name, pattern in PATTERNS:
            for m in pattern.finditer(reading):
                if name in NEGATABLE and negated(reading, m.start()):
                    continue
                if how:
                    found.append(Finding("injection", 0, len(text), f"{name} ({how})"))
                else:
                    found.append(Finding("injection", m.start(), m.end(), name))
                break
        if found:
            break  # the text as written (or the first reading that shows it) is enough
    return _dedupe(found)


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
