"""Every file a command writes (``atomic_write``: whole or not at all), and the checks of its output paths
before any work, creating nothing (``check_output_file`` / ``check_output_dir`` / ``check_outputs``). No JAX.

One rule for every output path option of every command (train, report, render, sweep plan ``--out``; eval,
baselines, bench ``--json``; sweep optuna ``--storage``): the folders above it that do not exist yet are created,
like ``mkdir -p``, after the checks say they can be.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Callable
from typing import IO, Any


class OutputError(ValueError):
    """An output path a command cannot write (e.g. a folder where a file is wanted, a read-only folder, a name
    too long): refused before any work, one line."""


class WriteError(OSError):
    """Writing an output failed (e.g. a full disk): one line ``cannot write PATH: REASON``; the previous
    version of the file, if any, is intact and no temporary file is left."""


def atomic_write(path: str, data: bytes | str | Callable[[IO[bytes]], None]) -> None:
    """Writes file ``path`` whole or not at all (a temporary file beside it, flushed, then ``os.replace``; its
    folder made if need be); a symlink's target is written so; a character device or FIFO (``/dev/null``, a
    pipe) is written through. ``data``: bytes, text (UTF-8), or a function writing into a binary file (a
    figure's ``savefig``). An OS error is a ``WriteError`` naming ``path``; the temporary file is removed."""
    if callable(data):
        buf = io.BytesIO()
        data(buf)
        data = buf.getvalue()
    data = data.encode() if isinstance(data, str) else data
    target = os.path.realpath(path)
    try:
        if os.path.exists(target) and _kind(os.stat(target).st_mode) in ("character device", "FIFO"):
            with open(target, "wb") as f:
                f.write(data)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:  # mode 0o666 less the umask
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(target):  # keep the file's permissions
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None


#: the files ``rl3jax report`` writes into its --out folder
REPORT_FILES = ("results.md", "results.json", "learning_curve.png", "adaptation.png", "cache.json")


def numbered_paths(out: str, n: int) -> list[str]:
    """``[out]`` for one output, else ``OUT-0.EXT``, ``OUT-1.EXT``, ... (``render``'s GIFs)."""
    base, ext = os.path.splitext(out)
    return [out] if n == 1 else [f"{base}-{i}{ext}" for i in range(n)]


def check_outputs(out: str, flag: str, files: tuple[str, ...] = (), count: int = 1) -> None:
    """``check_output_file`` of a command's outputs: ``numbered_paths(out, count)``, or with ``files`` the
    folder ``out`` (``check_output_dir``) and those files in it. ``OutputError``, one line."""
    if files:
        check_output_dir(out, flag)
    for path in [os.path.join(out, f) for f in files] or numbered_paths(out, count):
        check_output_file(path, flag)


def atomic_write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON (``atomic_write``)."""
    atomic_write(path, json.dumps(obj, indent=2))


def _kind(mode: int) -> str:
    return next((name for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISCHR,
                 "character device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISBLK, "block device"),
                 (stat.S_ISSOCK, "socket")) if test(mode)), "special file")


def _check_path(path: str, folder: str, flag: str, shown: str) -> None:
    """OutputError when a component of ``path`` (absolute) or the whole path is longer than the file system
    allows, or unless ``folder`` (``path`` or its folder) is a writable folder or can be made below its nearest
    existing ancestor."""
    anc = _nearest_existing(folder)
    name_max, path_max = (os.pathconf(anc if os.path.isdir(anc) else os.path.dirname(anc), k)
                          for k in ("PC_NAME_MAX", "PC_PATH_MAX"))
    long = [c for c in path.split(os.sep) if len(c.encode()) > name_max]
    if long:
        raise OutputError(f"{flag} {shown}: the name {long[0][:40]}... is longer than the {name_max} bytes "
                          "the file system allows")
    if len(path.encode()) >= path_max:
        raise OutputError(f"{flag} {shown}: the path is {len(path.encode())} bytes long, the limit is {path_max}")
    if not os.path.isdir(anc):
        raise OutputError(f"{flag} {shown}: cannot be created below {anc}, which is a {_kind(os.stat(anc).st_mode)}")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {shown}: " + ("the folder is not writable" if anc == os.path.realpath(folder) else
                                                 f"cannot be created, {anc} is not writable"))


def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.lexists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return os.path.realpath(p)


def check_output_dir(path: str, flag: str) -> None:
    """``OutputError`` (one line naming ``flag`` and ``path``) unless folder ``path`` (a symlink: its target)
    exists as a writable folder or can be created. Creates nothing."""
    target = os.path.realpath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise OutputError(f"{flag} {path}: exists and is not a folder (a {_kind(os.stat(target).st_mode)})")
    _check_path(target, target, flag, path)


def check_output_file(path: str | None, flag: str) -> None:
    """``OutputError`` (one line) unless ``atomic_write`` can write file ``path``: a regular file (or a new one)
    whose folder is writable or can be created, a symlink to one, or a writable character device or FIFO
    (written through). A folder, block device or socket is refused. Creates nothing; None (no output asked
    for) passes."""
    if path is None:
        return
    target = os.path.realpath(path)
    if os.path.exists(target):
        kind = _kind(os.stat(target).st_mode)
        if kind not in ("file", "character device", "FIFO"):
            raise OutputError(f"{flag} {path}: is a {kind}, expected a file path")
        if not os.access(target, os.W_OK):
            raise OutputError(f"{flag} {path}: the {kind} is not writable")
        if kind != "file":  # written through
            return
    _check_path(target, os.path.dirname(target), flag, path)
