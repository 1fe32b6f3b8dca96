"""Every text medpipe wrote into a store, decoded (:func:`scan_store`).

Zarr attributes (``zarr.json``), string arrays decoded by zarr (compressed chunks
included), Parquet tables (string columns and schema metadata), CSV/JSON/HTML/Markdown
text, the members of zip files (skops models, npz), the text chunks of PNG figures, and
the printable strings of anything else.  Numeric arrays hold no text; their chunks are
counted as looked at but not matched.  The catalog is the one place allowed to hold
archive paths: its files are listed, not scanned.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from medpipe.errors import ConfigError
from medpipe.store import layout
from medpipe.store.fs import store_root, zarr_store

__all__ = ["StoreScan", "scan_store", "file_texts"]

_TEXT_SUFFIXES = (
    ".json", ".html", ".htm", ".md", ".txt", ".csv", ".tsv", ".yaml", ".yml", ".log",
    ".lock", ".xml", ".svg",
)  # fmt: skip
_NUMERIC = ("bool", "int", "uint", "float", "complex")


def _rel(root: str, full: str) -> str:
    return posixpath.relpath(full, root) if full != root else ""


def _string_kind(meta: dict[str, Any]) -> bool:
    """Whether a Zarr array's data type can hold text (not numeric)."""
    dtype = meta.get("data_type", meta.get("dtype"))
    if isinstance(dtype, dict):
        dtype = dtype.get("name")
    if isinstance(dtype, list):  # a structured v2 dtype
        return True
    name = str(dtype).lstrip("<>|=")
    return not name.startswith(_NUMERIC) and name[:1] not in ("i", "u", "f", "c", "b", "M", "m")


def _printable(data: bytes) -> str:
    return "\n".join(m.decode("ascii") for m in re.findall(rb"[\x20-\x7e]{4,}", data))


def _png_text(data: bytes) -> str:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        try:
            if kind == b"tEXt":
                out.append(body.replace(b"\0", b" ").decode("latin-1"))
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                text = zlib.decompress(rest[1:]).decode("latin-1")
                out.append(key.decode("latin-1") + " " + text)
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _tr, _, text = rest.partition(b"\0")
                raw = zlib.decompress(text) if compressed else text
                out.append(key.decode("latin-1") + " " + raw.decode("utf-8", "replace"))
        except (zlib.error, IndexError, UnicodeDecodeError):
            out.append(_printable(body))
    return "\n".join(out)


def _npy_text(data: bytes) -> str:
    import numpy as np

    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError):
        return _printable(data)
    if arr.dtype.kind in "USO":
        return "\n".join(str(v) for v in arr.ravel())
    return ""


def _parquet_text(data: bytes) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    parts = [" ".join(table.schema.names)]
    meta = table.schema.metadata or {}
    parts += [f"{k.decode(errors='replace')} {v.decode(errors='replace')}" for k, v in meta.items()]
    for name in table.schema.names:
        col = table.column(name)
        t = col.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
                or pa.types.is_large_binary(t) or pa.types.is_nested(t):
            parts += [str(v) for v in col.to_pylist() if v is not None]
    return "\n".join(parts)


def file_texts(name: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(``member``, text) pairs of one file's contents, decoded by its kind."""
    low = name.lower()
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                member = zf.read(info)
                if info.filename.lower().endswith(".npy"):
                    yield info.filename, _npy_text(member)
                else:
                    for sub, text in file_texts(info.filename, member):
                        yield f"{info.filename}{':' + sub if sub else ''}", text
        return
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        yield "", _png_text(data)
    elif data[:2] == b"\x1f\x8b":
        try:
            yield "", _printable(gzip.decompress(data))
        except (OSError, EOFError, zlib.error):
            yield "", _printable(data)
    elif data[:4] == b"PAR1" or low.endswith(".parquet"):
        yield "", _parquet_text(data)
    elif low.endswith(".npy"):
        yield "", _npy_text(data)
    elif low.endswith(_TEXT_SUFFIXES) or posixpath.basename(low) in ("zarr.json", ".zattrs",
                                                                    ".zarray", ".zgroup"):
        text = data.decode("utf-8", "replace")
        if low.endswith((".json", ".zattrs", ".zarray", ".zgroup")):
            try:
                text = json.dumps(json.loads(text), ensure_ascii=False)
            except ValueError:
                pass
        elif low.endswith((".html", ".htm", ".xml", ".svg")):
            text = html.unescape(text)
        yield "", text
    else:
        yield "", _printable(data)


@dataclass
class StoreScan:
    """The texts of a store (see :func:`scan_store`) and what was looked at."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0
    allowed: list[str] = field(default_factory=list)


def scan_store(store: str) -> StoreScan:
    """Every text medpipe wrote into a store, decoded, with where it is.

    Parameters
    ----------
    store
        Store path or fsspec URL.

    Returns
    -------
    StoreScan
        ``(location, text)`` pairs; the number of files looked at; the catalog's files
        (allowed to hold archive paths, not scanned).

    Raises
    ------
    ConfigError
        The store does not exist.
    """
    fs, root = store_root(store)
    if not fs.exists(root):
        raise ConfigError(f"store {store!r} does not exist")
    files = sorted(fs.find(root, withdirs=False))
    out = StoreScan()
    arrays: dict[str, dict[str, Any]] = {}
    for full in files:
        rel = _rel(root, full)
        if posixpath.basename(rel) in ("zarr.json", ".zarray"):
            try:
                meta = json.loads(fs.cat_file(full))
            except ValueError:
                continue
            if meta.get("node_type") == "array" or posixpath.basename(rel) == ".zarray":
                arrays[posixpath.dirname(rel)] = meta
    catalog_prefix = layout.CATALOG + "/"
    for full in files:
        rel = _rel(root, full)
        if rel.startswith(catalog_prefix):
            out.allowed.append(rel)
            continue
        out.files += 1
        parent = _owning_array(rel, arrays)
        if parent is not None and posixpath.basename(rel) not in ("zarr.json", ".zarray",
                                                                   ".zattrs"):
            continue  # a chunk: read through its array below
        data = fs.cat_file(full)
        try:
            found = list(file_texts(rel, data))
        except Exception as err:  # noqa: BLE001 - a file that does not decode: its strings
            found = [("", f"(not decodable: {type(err).__name__})\n{_printable(data)}")]
        for member, text in found:
            if text:
                out.texts.append((f"{rel}:{member}" if member else rel, text))
    for path, meta in sorted(arrays.items()):
        if path.startswith(catalog_prefix) or not _string_kind(meta):
            continue
        out.texts.append((f"{path} (string array)", _array_text(fs, root, path)))
    return out


def _owning_array(rel: str, arrays: dict[str, Any]) -> str | None:
    d = posixpath.dirname(rel)
    while d:
        if d in arrays:
            return d
        d = posixpath.dirname(d)
    return "" if "" in arrays else None


def _array_text(fs: Any, root: str, path: str) -> str:
    import zarr

    try:
        arr = zarr.open_array(store=zarr_store(fs, posixpath.join(root, path), read_only=True),
                              mode="r")
        values = arr[...]
    except Exception as err:  # noqa: BLE001 - an unreadable array: scan its raw chunks
        chunks = [f for f in fs.find(posixpath.join(root, path)) if not f.endswith("zarr.json")]
        return f"(undecodable: {err})\n" + "\n".join(_printable(fs.cat_file(c)) for c in chunks)
    flat = getattr(values, "ravel", lambda: [values])()
    return "\n".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                     for v in flat)
