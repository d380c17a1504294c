"""A second, forgiving decode for bodies the fast typed decode rejected.

Real servers of this kind send ``null`` for "no value", PHP's ``[]`` for an empty object,
numbers where text is documented and ``""`` for a missing number. The fast path stays
strict and quick; only a body it rejects comes here, is reshaped toward the schema, and
is converted again, so one odd field does not cost a whole VM.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

import msgspec
from msgspec import inspect as mi

__all__ = ["lenient_convert", "loose_decode"]

_NUMBERS = (mi.IntType, mi.FloatType, mi.DecimalType)

# Decimal for every JSON fraction keeps money exact through the second conversion.
_LOOSE = msgspec.json.Decoder(float_hook=Decimal)


def loose_decode(raw: bytes | bytearray | memoryview | str) -> Any:
    """Decode ``raw`` as plain JSON, every fraction a ``Decimal`` (money stays exact)."""
    return _LOOSE.decode(raw)


def lenient_convert(loose: Any, type_: Any, dec_hook: Any) -> Any:
    """Convert plain decoded JSON to ``type_`` after reshaping what the API is known to get wrong.

    Raises msgspec errors like the fast path when the body still does not fit.
    """
    return msgspec.convert(_clean(loose, _info(type_)), type=type_, strict=False, dec_hook=dec_hook)


@cache
def _info(type_: Any) -> mi.Type:
    """Return msgspec's description of a type, once per type."""
    return mi.type_info(type_)


def _clean(value: Any, info: mi.Type) -> Any:
    """Reshape ``value`` toward ``info``; leave what it cannot improve for convert to judge."""
    info = _non_null(info)
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        return _clean_struct(value, info)
    if isinstance(info, mi.ListType) and isinstance(value, list):
        return [_clean(item, info.item_type) for item in value]
    if isinstance(info, mi.DictType) and isinstance(value, dict):
        return {key: _clean(item, info.value_type) for key, item in value.items()}
    return value


def _clean_struct(obj: dict[str, Any], info: mi.StructType) -> dict[str, Any]:
    """Drop or fix the fields of one object, then clean what they hold."""
    cleaned = dict(obj)
    for field in info.fields:
        name = field.encode_name
        if name not in cleaned:
            continue
        value = cleaned[name]
        target = _non_null(field.type)
        if (
            (value is None and not _nullable(field.type))
            or (value == [] and isinstance(target, (mi.StructType, mi.DictType)))
            or (value == "" and isinstance(target, _NUMBERS))
        ):
            del cleaned[name]  # absent: the field's default applies
        elif isinstance(target, mi.StrType) and isinstance(value, (int, Decimal)):
            cleaned[name] = str(value)  # an id sent as a number
        elif value is not None:
            cleaned[name] = _clean(value, field.type)
    return cleaned


def _nullable(info: mi.Type) -> bool:
    """Whether ``None`` is a valid value of the type."""
    return isinstance(info, mi.NoneType) or (
        isinstance(info, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in info.types)
    )


def _non_null(info: mi.Type) -> mi.Type:
    """Return the one non-``None`` member of an optional type, or the type itself."""
    if isinstance(info, mi.UnionType):
        members = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(members) == 1:
            return members[0]
    return info
