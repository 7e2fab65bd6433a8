"""Turn what serving code passes into JSON-ready column values, or say why not.

The publisher's hot loop handles exact float/int/str/None inline; these functions take
every other spelling (numpy scalars, Decimals, UUIDs, ...) and build the columns.
"""

from __future__ import annotations

import decimal
import math
import numbers
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from driftline.models.events.wire import MAX_NAME_LENGTH

Column = list[Any]

_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1  # orjson refuses integers outside this range
# Exact types whose conversion is one call (numpy's, from feature arrays, are common);
# anything else takes the general path of scalar.
_EXACT_NUMBERS: dict[type, Callable[[Any], Any]] = {
    type(None): lambda value: None,
    bool: int,  # 1/0 keeps a flag column numeric for the worker
    int: lambda value: value if _I64_MIN <= value <= _U64_MAX else float(value),
    np.bool_: int,
    **dict.fromkeys((np.float64, np.float32, np.float16), float),
    **dict.fromkeys((np.int64, np.int32, np.int16, np.int8,
                     np.uint64, np.uint32, np.uint16, np.uint8), int),
}
_EXACT_FEATURES: dict[type, Callable[[Any], Any]] = {**_EXACT_NUMBERS, np.str_: str}
_is_float: Callable[[Any], bool] = float.__instancecheck__


class Rejected(ValueError):
    """An event the publisher drops as invalid; the message says why."""


# --- values -------------------------------------------------------------------------
# The hot loop handles exact float/int/str/None inline; these take the rare spellings.


def to_scalar(value: Any, name: Any, *, numeric: bool) -> float | int | str | None:
    """A number, string (unless ``numeric``) or None, from any spelling of a scalar."""
    if value is None:
        return None
    if isinstance(value, bool):  # 1/0 keeps a flag column numeric for the worker
        return int(value)
    if isinstance(value, int):
        number = int(value)
        return number if _I64_MIN <= number <= _U64_MAX else float(number)
    if isinstance(value, float):  # numpy.float64 is one; NaN stays for the nonfinite count
        return float(value)
    if isinstance(value, str) and not numeric:
        return str(value)
    if hasattr(value, "dtype") and hasattr(value, "item"):  # other numpy (or torch) scalars
        try:
            item = value.item()
        except (TypeError, ValueError):
            raise Rejected(f"{name!s:.80} is an array, not a scalar") from None
        if type(item) is not type(value):
            return to_scalar(item, name, numeric=numeric)
    if isinstance(value, numbers.Integral):
        return to_scalar(int(value), name, numeric=numeric)
    if isinstance(value, numbers.Real | decimal.Decimal):
        return float(value)
    expected = "a number" if numeric else "a number, string, bool or None"
    raise Rejected(f"{name!s:.80} must be {expected}, not {type(value).__name__}")


def to_text(value: Any, where: str) -> str:
    if isinstance(value, str) and value and value.isprintable():
        return str(value)
    raise Rejected(f"{where} must be a non-empty printable string, not {value!r:.80}")


def to_request_id(value: Any) -> str:
    if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    return to_text(value, "request_id")


def request_and_time(request_id: Any, event_time_ms: Any) -> tuple[str, int]:
    """An event's request id and event time, checked; the time defaults to now (UTC ms)."""
    if event_time_ms is None:
        event_time_ms = time.time_ns() // 1_000_000
    if type(request_id) is not str or not request_id:
        request_id = to_request_id(request_id)
    if type(event_time_ms) is not int or event_time_ms < 0:
        event_time_ms = to_event_time(event_time_ms)
    return request_id, event_time_ms


def to_event_time(value: Any) -> int:
    number = to_scalar(value, "event_time_ms", numeric=True)
    if not isinstance(number, int | float) or not 0 <= number < math.inf:
        raise Rejected(f"event_time_ms must be UTC epoch milliseconds, not {value!r:.80}")
    return int(number)


def to_mapping(value: Any, where: str) -> dict[Any, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise Rejected(f"{where} must be a mapping, not {type(value).__name__}")


def to_outcomes(outcomes: Any) -> dict[str, float | int]:
    """One event's outcomes as name -> finite number (bools as 1/0), or :class:`Rejected`.

    Unlike a feature, an outcome is never nulled: it is a measured fact, so a NaN or an
    infinity is a bug in the caller, and null on the wire means "not reported".
    """
    if not isinstance(outcomes, Mapping):
        raise Rejected(f"outcomes must be a mapping of name -> number or bool, "
                       f"not {type(outcomes).__name__}")
    if not outcomes:
        raise Rejected("outcomes is empty: report at least one name -> number or bool")
    row: dict[str, float | int] = {}
    for name, value in outcomes.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise Rejected(f"outcome name {name!r:.80} must be a string of 1 to "
                           f"{MAX_NAME_LENGTH} characters")
        try:
            number = to_scalar(value, name, numeric=True)
        except (Rejected, OverflowError):  # OverflowError: an int too large for a float
            number = None
        if not isinstance(number, int | float) or number - number != 0:  # NaN, ±inf too
            raise Rejected(f"outcome {name!r:.80} must be a finite number or bool, "
                           f"not {value!r:.80}")
        row[str(name)] = number
    return row


def column_name(name: Any, *, numeric: bool) -> str:
    if isinstance(name, str):
        return str(name)
    if numeric and isinstance(name, numbers.Integral) and not isinstance(name, bool):
        return str(int(name))  # class labels 0/1 of a classifier's probabilities
    raise Rejected(f"column name {name!r:.80} is not a string")


def null_if_nonfinite(value: Any, where: str, numeric: bool, nulled: int) -> tuple[Any, int]:
    """Convert a scalar that is not None; NaN/inf become None, counted in ``nulled``."""
    if type(value) is not float:
        value = to_scalar(value, where, numeric=numeric)
        if type(value) is not float:
            return value, nulled
    return (value, nulled) if value - value == 0.0 else (None, nulled + 1)


# --- columns ------------------------------------------------------------------------


def truncate(columns: dict[str, Column], n: int, width: int) -> None:
    """Undo a partial append: keep ``n`` rows and only the first ``width`` columns."""
    for column in columns.values():
        del column[n:]
    for name in list(columns)[width:]:
        del columns[name]


def append_row(columns: dict[str, Column], n: int, row: Mapping[Any, Any], *,
                numeric: bool) -> None:
    """Append one event's mapping to ``columns``, all of length ``n``.

    A name seen for the first time gets a column padded with ``n`` nulls, and a buffered
    name the event lacks gets a null. A bad value rolls everything back and raises.
    NaN and ±inf floats are appended as they are: orjson writes them as null, and
    :func:`count_nonfinite` counts them once per batch, off the serving path.
    """
    width = len(columns)
    # Plain floats (and strings, for features) need no conversion: two identity checks.
    plain, exact = (float, _EXACT_NUMBERS) if numeric else (str, _EXACT_FEATURES)
    try:
        for name, value in row.items():
            kind = type(value)
            if kind is not float and kind is not plain:
                convert = exact.get(kind)
                value = to_scalar(value, name, numeric=numeric) if convert is None else (
                    convert(value))
            try:
                column = columns[name]
            except KeyError:
                column = new_column(columns, name, n, row, numeric=numeric)
            column.append(value)
    except BaseException:
        truncate(columns, n, width)
        raise
    if len(row) != len(columns):  # buffered names this event lacks
        for column in columns.values():
            if len(column) == n:
                column.append(None)


def new_column(columns: dict[str, Column], name: Any, n: int, row: Mapping[Any, Any], *,
                numeric: bool) -> Column:
    """The column for a name not seen before (or spelled differently), padded with nulls."""
    text = column_name(name, numeric=numeric)
    if not isinstance(name, str) and text in row:  # {1: p, "1": q}: one column filled twice
        raise Rejected(f"names {name!r:.80} and {text!r:.80} are the same column")
    return columns.setdefault(text, [None] * n)


def count_nonfinite(columns: dict[str, Column]) -> int:
    """How many NaN/±inf floats the columns hold (orjson writes each one as null)."""
    count = 0
    for column in columns.values():
        total = sum(filter(_is_float, column))
        if total - total != 0.0:  # some value is not finite (or the sum overflowed)
            count += sum(1 for value in column if type(value) is float and value - value)
    return count
