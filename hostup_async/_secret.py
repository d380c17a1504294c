"""Keeping secrets out of reprs, logs and tracebacks: a string wrapper, and a body masker."""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec

__all__ = ["MASK", "Redactor", "SecretStr"]

#: What a secret shows as, wherever it is printed.
MASK = "**********"


class SecretStr:
    """A secret string whose ``repr`` and ``str`` are masked; ``get_secret_value()`` reveals it.

    >>> password = SecretStr("hunter2")
    >>> password
    SecretStr('**********')
    >>> print(password)
    **********
    >>> password.get_secret_value()
    'hunter2'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """Return the secret itself; call this only where the value must be used."""
        return self._value

    def __repr__(self) -> str:
        return f"SecretStr('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretStr):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


# A \u escape of a printable ASCII character: no JSON encoder needs one, so a body holding
# one may be spelling the key so that a plain byte search misses it.
_ASCII_ESCAPE = re.compile(rb"\\u00[2-7][0-9a-fA-F]")
# Canonical re-encoding keeps every number exact (fractions as Decimal, big ints as int).
_LOOSE = msgspec.json.Decoder(float_hook=Decimal)
_CANONICAL = msgspec.json.Encoder(decimal_format="number")


class Redactor:
    """Masks one secret (the API key) wherever a server might echo it.

    ``body()`` runs on every raw answer before anything is decoded from it, so no model,
    error, log line or hook event built from an answer can hold the key, whatever field
    the server echoed it into. It costs a ``bytes.find`` per spelling of the key.
    """

    __slots__ = ("_needles", "_secret")

    def __init__(self, secret: str) -> None:
        self._secret = secret
        escaped = msgspec.json.encode(secret)[1:-1]  # the key as JSON spells it in a string
        # Every way a JSON encoder may spell the key without \u escapes (PHP escapes "/").
        spellings = {secret.encode(), escaped, escaped.replace(b"/", b"\\/")}
        self._needles = tuple(n for n in spellings if n)

    def body(self, raw: bytes) -> bytes:
        """Return ``raw`` with every spelling of the secret replaced by the mask."""
        # A single-byte test first (memchr, microseconds): most bodies have no escape at all.
        if b"\\" in raw and _ASCII_ESCAPE.search(raw):
            raw = _canonical(raw)
        for needle in self._needles:
            if raw.find(needle) != -1:
                raw = raw.replace(needle, _MASK_BYTES)
        return raw

    def text(self, text: str) -> str:
        """Return ``text`` with the secret replaced by the mask."""
        return text.replace(self._secret, MASK) if self._secret in text else text


_MASK_BYTES = MASK.encode()


def _canonical(raw: bytes) -> bytes:
    """Re-encode a JSON body without needless escapes; a body that is not JSON is kept."""
    try:
        return _CANONICAL.encode(_LOOSE.decode(raw))
    except (msgspec.DecodeError, msgspec.EncodeError, ValueError, RecursionError):
        # Not valid JSON: nothing decodes from it, so no escaped key can come out of it.
        return raw
