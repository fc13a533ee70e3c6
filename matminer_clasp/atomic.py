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


def _read_umask() -> int:
    mask = os.umask(0o022)  # there is no way to read it without setting it
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it for an instant, which
#: other threads could see if it were done at every publication).
_UMASK = _read_umask()


def _as_if_created(path: Path, mode: int) -> None:
    """Give ``path`` the permissions a plain create would (``mode`` less the umask).

    mkdtemp / mkstemp make private (0700 / 0600) entries, and the rename keeps them: without
    this a published cache or output would be unreadable to the other users who share it.
    """
    os.chmod(path, mode & ~_UMASK)


def temp_folder_for(final: Path) -> Path:
    """A new, empty folder beside ``final`` (same file system) to build it in.

    Its name is private; its permissions are those of a folder made by ``mkdir``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    _as_if_created(tmp, 0o777)
    return tmp


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
        _as_if_created(Path(name), 0o666)
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
    _as_if_created(Path(name), 0o666)
    return Path(name)


__all__ = ["publish_folder", "temp_file_for", "temp_folder_for", "write_file_atomic"]
