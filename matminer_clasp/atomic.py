"""Publishing files and folders atomically, so that readers never see half a cache.

Every cache (the AMCSD index under ``$MATMINER_CLASP_CACHE``, the training graph cache, the
text-feature cache) is written to a private temporary name beside its final place and then
renamed with :func:`os.replace`, which is atomic on one file system. Two processes building the
same cache at once both succeed: the first rename wins, and the loser removes its own temporary
copy and uses the winner's (:func:`publish_folder` returns ``False``). Nothing is left behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path


def temp_folder_for(final: Path) -> Path:
    """A new, empty, private folder beside ``final`` (same file system) to build it in."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def publish_folder(tmp: Path, final: Path, replace: bool = False) -> bool:
    """Rename the finished folder ``tmp`` to ``final``; ``True`` if this call published it.

    Parameters
    ----------
    tmp
        A complete folder from :func:`temp_folder_for`.
    final
        Where it belongs.
    replace
        Replace an existing ``final`` (a deliberate rebuild): the old folder is first renamed
        aside, then removed. Without it, an existing ``final`` (another process won the race)
        is kept and ``tmp`` is removed.

    Returns
    -------
    bool
        ``False`` when another process published ``final`` first; ``tmp`` is removed either way.
    """
    old = None
    if replace and final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        try:
            os.replace(final, old / "old")
        except FileNotFoundError:  # someone else moved it first
            pass
    try:
        os.replace(tmp, final)
        won = True
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        won = False  # lost the race: the winner's complete folder is in place
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return won


def write_file_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def temp_file_for(path: Path) -> Path:
    """A fresh temporary file name beside ``path`` (for writers that take a file name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    return Path(name)


__all__ = ["publish_folder", "temp_file_for", "temp_folder_for", "write_file_atomic"]
