"""The gallery's ``labels`` section as columns: no Python object per entry.

A :class:`LabelTable` holds the entry ids as one int64 array, each row's label as an index into
the distinct labels (in first-registration order) and each row's parent the same way (-1: no
parent); a label string is decoded once per distinct label. The per-row lists of the JSON
columns (``table["id"]``, ``table["label"]``, ``table["parent"]``) are built only when asked for
(listing, rewriting the file), sharing one string object per distinct value.

:func:`scan_label_section` reads the section as docedge writes it (compact JSON,
``{"id":[...],"label":[...],"parent":[...]}``, no escapes) with vectorized byte scans. It is
written by hand because no library does this: ``json`` builds one ``int`` and two ``str`` per
entry (plus their lists), which is most of a 100k-entry open's time and memory. Anything it
does not recognise exactly (other key order, whitespace, escapes, control characters, invalid
UTF-8, an element that is not of the expected type) returns None, and the caller parses and
validates the section with ``json`` as before, so every malformed file gets the same error.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Columns of the labels section, in file order.
COLUMNS = ("id", "label", "parent")
_HEAD = b'{"id":['
_TO_LABEL = b'],"label":['
_TO_PARENT = b'],"parent":['
_TAIL = b"]}"
_QUOTE, _COMMA, _BACKSLASH = 0x22, 0x2C, 0x5C
#: Largest padded string matrix (bytes) built while grouping one column; longer labels take
#: the json path.
_GROUP_BYTES = 64 << 20


class LabelTable(Mapping[str, List[Any]]):
    """Columns of the labels section (see module docstring). ``ids`` ``(n,)`` int64 entry
    ids; ``label_codes`` ``(n,)`` int64 index into ``labels``; ``parent_codes`` ``(n,)`` int64
    index into ``parents`` (-1: null). As a mapping: the JSON columns as lists, on demand."""

    def __init__(self, ids: np.ndarray[Any, Any], label_codes: np.ndarray[Any, Any],
                 labels: List[str], parent_codes: Optional[np.ndarray[Any, Any]],
                 parents: Optional[List[str]],
                 raw_parents: Optional[Tuple[np.ndarray[Any, Any], np.ndarray[Any, Any],
                                             np.ndarray[Any, Any], np.ndarray[Any, Any]]] = None,
                 ) -> None:  # fmt: skip
        self.ids = ids
        self.label_codes = label_codes
        self.labels = labels
        self._parent_codes = parent_codes
        self._parents = parents
        # (section bytes, starts, ends, is null) of the parent column, grouped on first use
        # (a classifier needs only each label's first row's parent)
        self._raw_parents = raw_parents
        self._lists: Dict[str, List[Any]] = {}

    @property
    def parent_codes(self) -> np.ndarray[Any, Any]:
        """``(n,)`` int64 index into :attr:`parents` per row (-1: null)."""
        self._group_parents()
        assert self._parent_codes is not None
        return self._parent_codes

    @property
    def parents(self) -> List[str]:
        """Distinct parent labels, in first-occurrence order."""
        self._group_parents()
        assert self._parents is not None
        return self._parents

    def _group_parents(self) -> None:
        if self._parent_codes is not None or self._raw_parents is None:
            return
        buf, starts, ends, null = self._raw_parents
        codes = np.full(starts.shape[0], -1, np.int64)
        values: List[str] = []
        has = np.flatnonzero(~null)
        if has.size:
            g = _group(buf, starts[has], ends[has])
            if g is None:  # a hash collision or very long parents: group them one by one
                index: Dict[str, int] = {}
                codes[has] = [index.setdefault(_text(buf, a, b), len(index))
                              for a, b in zip(starts[has].tolist(), ends[has].tolist())]
                values = list(index)
            else:
                codes[has], values = g
        self._parent_codes, self._parents = codes, values

    @classmethod
    def from_columns(cls, ids: Sequence[Any], labels: Sequence[Any],
                     parents: Sequence[Any]) -> LabelTable:  # fmt: skip
        """From parsed (validated) JSON columns."""
        n = len(ids)
        index: Dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(x, len(index)) for x in labels), np.int64, n)
        pindex: Dict[Any, int] = {}
        pcodes = np.fromiter((-1 if x is None else pindex.setdefault(x, len(pindex))
                              for x in parents), np.int64, n)  # fmt: skip
        table = cls(np.asarray(ids, np.int64).reshape(n), codes, list(index), pcodes,
                    list(pindex))  # fmt: skip
        return table

    def __len__(self) -> int:
        return len(COLUMNS)

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __getitem__(self, key: str) -> List[Any]:
        if key not in COLUMNS:
            raise KeyError(key)
        if key not in self._lists:
            if key == "id":
                self._lists[key] = self.ids.tolist()
            elif key == "label":
                lab = self.labels
                self._lists[key] = [lab[c] for c in self.label_codes.tolist()]
            else:
                par: List[Optional[str]] = [*self.parents, None]  # code -1 -> None
                self._lists[key] = [par[c] for c in self.parent_codes.tolist()]
        return self._lists[key]

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def label_parents(self) -> List[Optional[str]]:
        """Parent of every distinct label (its first row's), aligned with :attr:`labels`."""
        first = first_rows(self.label_codes, len(self.labels))
        if self._parent_codes is None and self._raw_parents is not None:
            buf, starts, ends, null = self._raw_parents  # one decode per label, no grouping
            return [None if null[r] else _text(buf, starts[r], ends[r]) for r in first.tolist()]
        codes = self.parent_codes[first].tolist()
        return [self.parents[c] if c >= 0 else None for c in codes]


def first_rows(codes: np.ndarray[Any, Any], n_values: int) -> np.ndarray[Any, Any]:
    """First row of each value ``0 .. n_values - 1`` in ``codes`` ``(n,)``."""
    first = np.full(n_values, codes.shape[0], np.int64)
    np.minimum.at(first, codes, np.arange(codes.shape[0], dtype=np.int64))
    return first


def scan_label_section(raw: bytes, count: int) -> Optional[LabelTable]:
    """The labels section ``raw`` (UTF-8 JSON, ``count`` entries) as columns, or None when it
    is not in docedge's compact layout or any value is not what a valid section holds (the
    caller then parses it with ``json``, which names the problem)."""
    if count <= 0 or not raw.startswith(_HEAD) or not raw.endswith(_TAIL):
        return None
    buf = np.frombuffer(raw, np.uint8)
    if np.any(buf < 0x20) or np.any(buf == _BACKSLASH):  # escapes or control characters
        return None
    try:
        raw.decode("utf-8")  # every string decodes later, whichever is decoded first
    except UnicodeDecodeError:
        return None
    i0 = len(_HEAD)
    i1 = raw.find(b"]", i0)
    if i1 < 0 or raw[i1 : i1 + len(_TO_LABEL)] != _TO_LABEL:
        return None
    ids = _unsigned_ints(buf[i0:i1], count)
    if ids is None:
        return None
    if not np.all(ids[1:] > ids[:-1]):  # ids are usually ascending; else look for duplicates
        ordered = np.sort(ids)
        if np.any(ordered[1:] == ordered[:-1]):
            return None  # duplicate ids: the json path names the problem
    l0 = i1 + len(_TO_LABEL)
    l1 = raw.find(_TO_PARENT, l0)
    if l1 < 0:
        return None
    labels = _elements(buf, l0, l1, count)
    if labels is None:
        return None
    l_start, l_end, l_null = labels
    if np.any(l_null) or np.any(l_end <= l_start):  # labels: non-empty strings
        return None
    parents = _elements(buf, l1 + len(_TO_PARENT), len(raw) - len(_TAIL), count)
    if parents is None:
        return None
    grouped = _group(buf, l_start, l_end)
    if grouped is None:
        return None
    label_codes, label_values = grouped
    return LabelTable(ids, label_codes, label_values, None, None, (buf, *parents))


def _unsigned_ints(seg: np.ndarray[Any, Any], n: int) -> Optional[np.ndarray[Any, Any]]:
    """``n`` comma-separated JSON non-negative integers (no sign, no leading zero, at most 18
    digits) as int64, or None."""
    if seg.size == 0:
        return None
    comma = seg == _COMMA
    digit = (seg >= 0x30) & (seg <= 0x39)
    if not np.all(comma | digit):
        return None
    commas = np.flatnonzero(comma)
    if commas.size != n - 1:
        return None
    starts = np.concatenate([[0], commas + 1])
    ends = np.concatenate([commas, [seg.size]])
    lens = ends - starts
    if np.any(lens < 1) or np.any(lens > 18):
        return None
    if np.any((lens > 1) & (seg[np.minimum(starts, seg.size - 1)] == 0x30)):  # "01": not JSON
        return None
    # Validated above as exactly n JSON integers below 10**18, so numpy's text parser reads
    # them exactly (it would be lenient about anything else).
    out: np.ndarray[Any, Any] = np.fromstring(seg.tobytes().decode("ascii"), np.int64, sep=",")
    return out if out.shape == (n,) else None


def _elements(buf: np.ndarray[Any, Any], a: int, e: int,
              n: int) -> Optional[Tuple[np.ndarray[Any, Any], np.ndarray[Any, Any],
                                        np.ndarray[Any, Any]]]:  # fmt: skip
    """``n`` comma-separated elements of ``buf[a:e]``, each ``null`` or a string without
    escapes: ``(content starts, content ends, is null)`` as absolute offsets, or None. Works
    on the positions of quotes and commas only (a comma separates elements when an even
    number of quotes precedes it)."""
    seg = buf[a:e]
    if seg.size == 0:
        return None
    q = np.flatnonzero(seg == _QUOTE)
    if q.size % 2:
        return None
    if q.size == 2 * n:  # n strings, no null: quote pairs joined by single commas
        opens, closes = q[0::2], q[1::2]
        if (opens[0] == 0 and closes[-1] == seg.size - 1
                and np.all(opens[1:] == closes[:-1] + 2)
                and np.all(seg[closes[:-1] + 1] == _COMMA)):  # fmt: skip
            return opens + 1 + a, closes + a, np.zeros(n, bool)
    c = np.flatnonzero(seg == _COMMA)
    commas = c[np.searchsorted(q, c) % 2 == 0] if q.size else c
    if commas.size != n - 1:
        return None
    starts = np.concatenate([[0], commas + 1])
    ends = np.concatenate([commas, [seg.size]])
    lens = ends - starts
    if np.any(lens < 2):
        return None
    s0 = seg[starts]
    quotes_in = np.searchsorted(q, ends) - np.searchsorted(q, starts)
    is_str = (s0 == _QUOTE) & (seg[ends - 1] == _QUOTE) & (quotes_in == 2)
    is_null = (lens == 4) & (s0 == 0x6E)
    if np.any(is_null):
        at = starts[is_null]
        is_null[is_null] = (seg[at + 1] == 0x75) & (seg[at + 2] == 0x6C) & (seg[at + 3] == 0x6C)
    if not np.all(is_str | is_null):
        return None
    return starts + 1 + a, ends - 1 + a, is_null


def _group(buf: np.ndarray[Any, Any], starts: np.ndarray[Any, Any],
           ends: np.ndarray[Any, Any]) -> Optional[Tuple[np.ndarray[Any, Any], List[str]]]:  # fmt: skip
    """Distinct strings among ``buf[starts[i]:ends[i]]``: ``(code per string, the distinct
    strings decoded in first-occurrence order)``, or None (very long strings, a collision).
    Strings are padded into a byte matrix, hashed per row and grouped by hash; every row is
    then compared byte for byte with its group's first row, so a hash collision cannot merge
    two labels (it falls back to the json path)."""
    n = starts.shape[0]
    lens = ends - starts
    width = max(8, -(-int(lens.max()) // 8) * 8)
    if n * width > _GROUP_BYTES:
        return None
    if int(starts.max()) + width > buf.size:
        buf = np.concatenate([buf, np.zeros(width, np.uint8)])
    mat = sliding_window_view(buf, width)[starts]  # (n, width): each string and what follows
    mat *= np.arange(width, dtype=np.int64)[None, :] < lens[:, None]  # zero past its end
    words = mat.view(np.uint64)  # (n, width / 8); strings hold no 0 byte, so padding is exact
    h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for j in range(words.shape[1]):
        h = (h ^ words[:, j]) * np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(29)
    by_hash = np.argsort(h)
    hs = h[by_hash]
    new_group = np.concatenate([[True], hs[1:] != hs[:-1]])
    first = np.minimum.reduceat(by_hash, np.flatnonzero(new_group))  # first row per group
    inverse = np.empty(n, np.int64)
    inverse[by_hash] = np.cumsum(new_group) - 1
    if not np.array_equal(words, words[first[inverse]]):
        return None  # a hash collision: let the json path group them
    order = np.argsort(first, kind="stable")  # groups in first-occurrence order
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    values = [_text(buf, starts[r], ends[r]) for r in first[order].tolist()]
    codes: np.ndarray[Any, Any] = rank[inverse]
    return codes, values


def _text(buf: np.ndarray[Any, Any], a: int, b: int) -> str:
    """The string at ``buf[a:b]`` (UTF-8 checked for the whole section beforehand)."""
    return buf[a:b].tobytes().decode("utf-8")
