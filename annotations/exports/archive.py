"""A zip file on disk, written so that either the whole file appears or nothing does.

Entries are written one at a time (each in full, or streamed through ``open``) into
``<name>.part-<random>`` next to the target, which is renamed over the target only when
everything is written (``os.replace``: atomic on one file system). Any error on the way,
a full disk included, removes the partial file and lets the error through.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from pathlib import Path
from typing import IO

# Already compressed: storing them again deflated costs time and gains nothing.
_STORED_SUFFIXES = (".gz", ".png", ".zip", ".dcm")


def open_for_writing(path: Path) -> IO[bytes]:
    """The raw file the zip goes into (a seam for tests that simulate a full disk)."""
    return open(path, "xb")


class ZipWriter:
    """``with ZipWriter(target) as zw: zw.write(name, data)``: ``target`` exists afterwards only
    if the block finished without an exception; ``zw.bytes_written`` counts payload bytes."""

    def __init__(self, target: Path):
        self.target = Path(target)
        self.partial = self.target.with_name(f"{self.target.name}.part-{secrets.token_hex(4)}")
        self.bytes_written = 0
        self._file: IO[bytes] | None = None
        self._zip: zipfile.ZipFile | None = None

    def __enter__(self) -> ZipWriter:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_for_writing(self.partial)
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._zip.close()
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                os.replace(self.partial, self.target)
                return
        except BaseException:
            self._discard()
            raise
        self._discard()

    def _discard(self) -> None:
        for close in (getattr(self._zip, "close", None), getattr(self._file, "close", None)):
            try:
                if close:
                    close()
            except Exception:  # the disk may still be full: closing can fail too, removing must not
                pass
        self.partial.unlink(missing_ok=True)

    def write(self, name: str, data: bytes | str) -> None:
        """Add the entry ``name`` holding ``data`` (str is written as UTF-8)."""
        if isinstance(data, str):
            data = data.encode()
        compress = zipfile.ZIP_STORED if name.endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible archives
        info.compress_type = compress
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)
        self.bytes_written += len(data)

    def open(self, name: str) -> IO[bytes]:
        """A writable stream for the entry ``name`` (large JSON written piece by piece); close it
        before writing the next entry."""
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return self._zip.open(info, "w", force_zip64=True)
