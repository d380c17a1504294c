"""Turning models back into plain data: Python field names, secrets masked unless asked for."""

from __future__ import annotations

from typing import Any

import msgspec

from ._models import BandwidthUsage, Credentials, UsageSample
from ._secret import MASK, SecretStr

__all__ = ["json_encoder", "python_names", "to_builtins"]

# Structs without renamed fields or renamed children: msgspec encodes them as they are.
_PLAIN_STRUCTS = (UsageSample, BandwidthUsage, Credentials)


def python_names(obj: Any) -> Any:
    """Key Structs by their Python field names (``price_per_cycle``, not ``pricePerCycle``)."""
    if isinstance(obj, _PLAIN_STRUCTS):
        return obj
    if isinstance(obj, msgspec.Struct):
        return {name: python_names(getattr(obj, name)) for name in obj.__struct_fields__}
    if isinstance(obj, list):
        # Only lists of models are walked: a list of raw JSON (``pricing.addons``) holds no
        # Struct, and walking one nested 900 deep would exhaust the recursion limit.
        if any(isinstance(item, msgspec.Struct) for item in obj):
            return [python_names(item) for item in obj]
        return obj
    return obj  # the usage log's dict holds only plain Structs


def _secret_hook(show_secrets: bool) -> Any:
    """Return an ``enc_hook`` that writes SecretStr values masked, or revealed when asked."""

    def enc_hook(obj: Any) -> Any:
        if isinstance(obj, SecretStr):
            return obj.get_secret_value() if show_secrets else MASK
        raise NotImplementedError(type(obj))

    return enc_hook


def json_encoder(*, show_secrets: bool = False) -> msgspec.json.Encoder:
    """Build a JSON encoder for models: money as exact strings, secrets masked unless asked for."""
    return msgspec.json.Encoder(enc_hook=_secret_hook(show_secrets), decimal_format="string")


def to_builtins(obj: Any, *, show_secrets: bool = False) -> Any:
    """Turn a model (or a list of them) into dicts, lists, strings and numbers, ready for JSON.

    Keys are the Python field names, dates and hours ISO strings, money exact strings;
    passwords are ``**********`` unless ``show_secrets=True``.

    >>> from hostup_async import Credentials, SecretStr
    >>> to_builtins(Credentials(username="root", password=SecretStr("hunter2")))
    {'username': 'root', 'password': '**********', 'rootpassword': None}
    """
    return msgspec.to_builtins(python_names(obj), enc_hook=_secret_hook(show_secrets))
