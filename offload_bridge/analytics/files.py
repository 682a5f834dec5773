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

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

TEMPORARY_MARK = ".tmp-"  # a file whose name holds this is being written; readers skip it


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

    def write_parquet(self, table: pa.Table, path: str) -> None:
        """Write ``table`` to ``path`` so that readers see all of it or none of it."""
        directory = path.rsplit("/", 1)[0]
        self.filesystem.create_dir(directory, recursive=True)
        if not self.is_local:
            pq.write_table(table, path, filesystem=self.filesystem)
            return
        temporary = f"{path}{TEMPORARY_MARK}{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as sink:
                pq.write_table(table, sink)
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
