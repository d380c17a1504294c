"""A string wrapper that keeps secrets out of reprs, logs and tracebacks."""

from __future__ import annotations

__all__ = ["MASK", "SecretStr"]

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
