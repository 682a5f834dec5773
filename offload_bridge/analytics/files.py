"""Where the analytics tables live and how a file gets there whole: a local directory or any URL.

The target is a local path or any URL pyarrow's filesystem layer takes (``s3://bucket/prefix``,
``gs://bucket/prefix``, ``file:///abs/path``). A file appears whole or not at all:

- on a local filesystem it is written under a temporary name in the same directory, flushed to disk
  (fsync), renamed over its final name, and the directory is fsynced so the rename itself survives a crash;
- on an object store a single PUT of the whole object is already atomic (readers see the old object or
  the new one, never a part), and a rename there is a copy, so the file is written to its name directly.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

TEMPORARY_MARK = ".tmp-"  # a file whose name holds this is being written; readers skip it
# zstd rather than pyarrow's default snappy: about 4x smaller on webhook bodies (JSON that repeats its field
# names and values from record to record, beyond snappy's reach) for the same time to write and less to
# read (bench/export.py measures the bytes per million events).
COMPRESSION = "zstd"


@dataclass(frozen=True)
class Target:
    """The root of the tables: a filesystem and the path of the root in it (no trailing slash)."""

    filesystem: fs.FileSystem
    root: str

    @classmethod
    def parse(cls, location: str) -> Target:
        """A local path or a URL. Raises ValueError with pyarrow's reason for a URL it cannot use."""
        if "://" not in location:
            return cls(fs.LocalFileSystem(), os.path.abspath(location))
        try:
            filesystem, root = fs.FileSystem.from_uri(location)
        except (pa.ArrowException, ValueError) as error:
            raise ValueError(f"cannot use {location} as an export target: {error}") from None
        return cls(filesystem, root.rstrip("/"))

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, fs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def write_parquet(self, table: pa.Table, path: str, dictionary: list[str] | None = None) -> None:
        """Write ``table`` to ``path`` so that readers see all of it or none of it.

        ``dictionary``: the columns to dictionary-encode (None: all, pyarrow's default). A dictionary pays
        for columns whose values repeat; for values unique to their row it is only work.
        """
        directory = path.rsplit("/", 1)[0]
        self.filesystem.create_dir(directory, recursive=True)
        options: dict[str, Any] = {
            "compression": COMPRESSION,
            "use_dictionary": True if dictionary is None else dictionary,
        }
        if not self.is_local:
            pq.write_table(table, path, filesystem=self.filesystem, **options)
            return
        temporary = f"{path}{TEMPORARY_MARK}{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as sink:
                pq.write_table(table, sink, **options)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
