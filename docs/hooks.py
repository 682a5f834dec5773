"""MkDocs hook: add the reference pages rendered from the code (``offload_bridge.docs_reference``)
to the site.

Nothing is written into ``docs/``: the pages exist only in the build, so they cannot go stale.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from offload_bridge.docs_reference import reference_pages


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path, content in reference_pages(Path(config.docs_dir)).items():
        files.append(File.generated(config, path, content=content))
    return files
