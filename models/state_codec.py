"""The bytes of a checkpoint record: msgpack, numpy arrays as raw bytes, zlib on top.

State objects describe themselves as plain trees (``to_state()``: dicts, lists, numbers,
strings, numpy arrays, dataclasses). JSON wrote every array as a list of decimal numbers
and every NaN as null; here an array is its bytes, integer arrays in the narrowest integer
type that holds them (histogram and sketch counts are mostly small), and the whole record
is compressed, which shrinks the repeated bin edges and zero runs of sparse histograms.

    >>> import numpy as np
    >>> tree = {"counts": np.array([0, 3, 250], dtype=np.int64), "mean": 1.5}
    >>> back = decode(encode(tree))
    >>> back["counts"].dtype, back["counts"].tolist(), back["mean"]
    (dtype('int64'), [0, 3, 250], 1.5)
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

#: First bytes of every record, so a record of another format is refused, not misread.
MAGIC = b"DLS1"
_ARRAY = 1
_SAME = 2  # an array equal to an earlier one of the record: its index
_NARROW: tuple[type[np.integer[Any]], ...] = (np.uint8, np.int8, np.uint16, np.int16,
                                               np.uint32, np.int32)
_RANGES = [(int(np.iinfo(t).min), int(np.iinfo(t).max), np.dtype(t)) for t in _NARROW]


class StateFormatError(ValueError):
    """Bytes that are not a record of this format."""


def encode(tree: Any, level: int = 1) -> bytes:
    """``tree`` as a record; ``level`` is zlib's (1: fast, and most of the gain)."""
    seen: dict[tuple[str, tuple[int, ...], bytes], int] = {}

    def default(value: Any) -> Any:
        if isinstance(value, np.ndarray) and value.dtype != object:
            # Bin edges recur in every window of a feature: stored once per record.
            key = (value.dtype.str, value.shape, value.tobytes())
            index = seen.get(key)
            if index is not None:
                return msgpack.ExtType(_SAME, index.to_bytes(4, "little"))
            seen[key] = len(seen)
            return _pack_array(value)
        return _default(value)

    return MAGIC + zlib.compress(msgpack.packb(tree, default=default, use_bin_type=True),
                                 level)


def decode(data: bytes) -> Any:
    """The tree :func:`encode` was given (tuples come back as lists, arrays as arrays of
    their original dtype, each its own copy)."""
    if not data.startswith(MAGIC):
        raise StateFormatError("not a driftline state record (unknown format)")
    arrays: list[npt.NDArray[Any]] = []

    def ext(code: int, body: bytes) -> Any:
        if code == _SAME:
            return arrays[int.from_bytes(body, "little")].copy()
        if code != _ARRAY:
            raise ValueError(f"unknown extension type {code}")
        arrays.append(_unpack_array(body))
        return arrays[-1]

    try:
        raw = zlib.decompress(memoryview(data)[len(MAGIC):])
        return msgpack.unpackb(raw, ext_hook=ext, strict_map_key=False, raw=False)
    except (zlib.error, ValueError, IndexError, msgpack.UnpackException) as exc:
        raise StateFormatError(f"damaged state record: {exc}") from exc


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()  # objects (categories): as a list
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = getattr(value, "__dict__", None)  # a dataclass without slots: its fields
        if fields is not None:
            return fields
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot store a {type(value).__name__} in a state record")


def _pack_array(array: npt.NDArray[Any]) -> Any:
    stored = np.ascontiguousarray(array)
    if stored.dtype.kind in "iu" and stored.size and stored.dtype.itemsize > 1:
        low, high = int(stored.min()), int(stored.max())
        for t_min, t_max, dtype in _RANGES:
            if t_min <= low and high <= t_max and dtype.itemsize < stored.dtype.itemsize:
                stored = stored.astype(dtype)
                break
    # A short text header, "<original dtype> <stored dtype> <shape>\n": cheaper to write
    # than a nested msgpack document for each of a record's hundreds of arrays.
    shape = "x".join(map(str, array.shape))
    header = f"{array.dtype.str} {stored.dtype.str} {shape}\n".encode()
    return msgpack.ExtType(_ARRAY, header + stored.tobytes())


def _unpack_array(data: bytes) -> npt.NDArray[Any]:
    end = data.index(b"\n")
    original, stored, shape = data[:end].decode().split(" ")
    dims = [int(n) for n in shape.split("x")] if shape else []
    array = np.frombuffer(data, dtype=np.dtype(stored), offset=end + 1)
    return array.astype(np.dtype(original)).reshape(dims)
