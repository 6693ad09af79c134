"""Streaming records out of JSON files whose bytes may be damaged.

A JSON list (or the first list inside a top-level object) is split into its elements by a byte
scanner that tracks only strings, escapes and bracket depth, so one element holding non-UTF-8
bytes, a wrong type or broken syntax is yielded as a `BadRecord` and the next element is read as
usual. JSON Lines are read line by line as bytes for the same reason. Only damage to the list
itself (the file ends inside the list, or junk after it) stops reading: `DataFileError` names the
file and the byte offset, never a silent early end.

The file is memory-mapped, so a 300 MB annotation file is never loaded whole.
"""

from __future__ import annotations

import json
import mmap
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyeye.errors import DataFileError

BAD_BYTES = "non-UTF-8 bytes"
BAD_JSON = "malformed record"

_SPECIAL = re.compile(rb'["{}\[\],]')
_STRING_END = re.compile(rb'["\\]')
_OBJECT_SPECIAL = re.compile(rb'["{}\[\],:]')
_WS = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


@dataclass
class BadRecord:
    """A record that could not be decoded: ``reason`` (``BAD_BYTES``/``BAD_JSON``) and where."""

    reason: str
    detail: str


def decode_record(data: bytes, where: str) -> Any:
    """Bytes of one JSON value -> the value, or a `BadRecord` saying why not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadRecord(BAD_BYTES, f"{where}: byte {err.start} of the record is not UTF-8")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        msg = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        return BadRecord(BAD_JSON, f"{where}: not JSON ({msg})")


def _skip_string(mm: Any, start: int, path: Path, item_start: int) -> int:
    """Offset just after the string opened at `start` (which holds the quote)."""
    k = start + 1
    while True:
        m = _STRING_END.search(mm, k)
        if m is None:
            raise DataFileError(
                f"{path}: the file ends inside a string of the record at byte {item_start}: "
                "it is cut off or broken from there; re-download or repair it"
            )
        if mm[m.start() : m.start() + 1] == b"\\":
            k = m.start() + 2
            continue
        return m.end()


def _array_items(mm: Any, open_at: int, path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each element of the array whose ``[`` is at `open_at`.

    Sets nothing; raises `DataFileError` when the file ends before the array closes. The offset
    just after the closing bracket is returned as the generator's value.
    """
    i = open_at + 1
    depth = 0
    item_start = i
    while True:
        m = _SPECIAL.search(mm, i)
        if m is None:
            raise DataFileError(
                f"{path}: the file ends inside the JSON list (the record at byte {item_start} is "
                "cut off or the list is broken from there): re-download or repair the file"
            )
        j = m.start()
        c = mm[j : j + 1]
        if c == b'"':
            i = _skip_string(mm, j, path, item_start)
            continue
        if c in (b"{", b"["):
            depth += 1
        elif c in (b"}", b"]"):
            if depth > 0:
                depth -= 1
            elif c == b"]":
                item = bytes(mm[item_start:j])
                if item.strip(_WS):
                    yield item_start, item
                return j + 1
        elif depth == 0:  # a comma between elements
            yield item_start, bytes(mm[item_start:j])
            item_start = j + 1
        i = j + 1


def _first_list_of_object(mm: Any, path: Path) -> tuple[str, int]:
    """(key, offset of ``[``) of the first list directly under the top-level object."""
    i = mm.find(b"{") + 1
    depth, key, is_value = 0, None, False
    while True:
        m = _OBJECT_SPECIAL.search(mm, i)
        if m is None:
            break
        j = m.start()
        c = mm[j : j + 1]
        if c == b'"':
            end = _skip_string(mm, j, path, j)
            if depth == 0 and not is_value:
                key = bytes(mm[j + 1 : end - 1]).decode("utf-8", "replace")
            i = end
            continue
        if depth == 0 and c == b":":
            is_value = True
        elif depth == 0 and c == b",":
            key, is_value = None, False
        elif c == b"[" and depth == 0 and is_value and key is not None:
            return key, j
        elif c in (b"{", b"["):
            depth += 1
        elif c in (b"}", b"]"):
            if depth == 0:
                break
            depth -= 1
        i = j + 1
    raise DataFileError(
        f"{path}: a JSON object without any list of records inside: expected a list of records, "
        "an object holding one, or JSON Lines"
    )


def _looks_like_jsonl(mm: Any) -> bool:
    """Two or more lines that each start with ``{``: JSON Lines rather than one object."""
    first_end = mm.find(b"\n")
    if first_end == -1:
        return False
    rest = bytes(mm[first_end + 1 : first_end + 4096]).lstrip(_WS)
    first = bytes(mm[:first_end])
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        # A damaged first line is still a JSON Lines record when its brackets close on that
        # line; one object pretty-printed over several lines leaves them open.
        return rest[:1] == b"{" and _open_brackets(first) == 0
    return rest[:1] == b"{"


def _open_brackets(data: bytes) -> int:
    """Brackets still open at the end of `data` (outside strings)."""
    depth, i = 0, 0
    while True:
        m = _SPECIAL.search(data, i)
        if m is None:
            return depth
        c = data[m.start() : m.start() + 1]
        if c == b'"':
            k = m.start() + 1
            while True:
                e = _STRING_END.search(data, k)
                if e is None:
                    return depth + 1  # an unterminated string: not a closed line
                if data[e.start() : e.start() + 1] == b"\\":
                    k = e.start() + 2
                    continue
                i = e.end()
                break
            continue
        depth += 1 if c in (b"{", b"[") else -1 if c in (b"}", b"]") else 0
        i = m.end()


def iter_json_file(path: Path) -> tuple[str, Iterator[Any]]:
    """(shape, records) of `path`: a JSON list, an object holding a list, or JSON Lines.

    Each record is the decoded value or a `BadRecord`. Shapes: ``"json-list"``,
    ``"json-object:<key>"``, ``"jsonl"``. Raises `DataFileError` for a file that is not JSON,
    and (while iterating) when the list breaks off.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block the open
            raise DataFileError(f"{path}: not a regular file: give a JSON file")
        handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    except OSError as err:
        raise DataFileError(f"{path}: cannot open the file: {err.strerror}") from None
    size = path.stat().st_size
    if size == 0:
        handle.close()
        raise DataFileError(f"{path}: the file is empty (0 bytes): expected JSON records")
    mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    start = len(_BOM) if mm[:3] == _BOM else 0
    while start < size and mm[start : start + 1] in (b" ", b"\t", b"\r", b"\n"):
        start += 1
    first = mm[start : start + 1]
    if first == b"[":
        shape, open_at = "json-list", start
    elif first == b"{" and _looks_like_jsonl(mm):
        return "jsonl", _lines(path, handle, mm)
    elif first == b"{":
        key, open_at = _first_list_of_object(mm, path)
        shape = f"json-object:{key}"
    else:
        head = bytes(mm[start : start + 20])
        mm.close()
        handle.close()
        raise DataFileError(
            f"{path}: not JSON (starts with {head!r} at byte {start}); expected a list, an object "
            "or JSON Lines"
        )
    return shape, _list(path, handle, mm, open_at, shape == "json-list")


def _list(path: Path, handle: Any, mm: Any, open_at: int, top_level: bool) -> Iterator[Any]:
    try:
        items = _array_items(mm, open_at, path)
        while True:
            try:
                offset, data = next(items)
            except StopIteration as stop:
                end = stop.value
                break
            yield decode_record(data, f"record at byte {offset}")
        tail = bytes(mm[end : end + 64]).strip(_WS)
        if top_level and tail:
            raise DataFileError(
                f"{path}: unexpected data after the JSON list at byte {end} ({tail[:20]!r}): "
                "the list is broken there; repair the file"
            )
    finally:
        mm.close()
        handle.close()


def _lines(path: Path, handle: Any, mm: Any) -> Iterator[Any]:
    try:
        offset = 0
        for number, line in enumerate(iter(mm.readline, b""), 1):
            if line.strip(_WS):
                yield decode_record(line, f"line {number} (byte {offset})")
            offset += len(line)
    finally:
        mm.close()
        handle.close()
