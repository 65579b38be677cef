"""Extracting archives that came from somewhere else (a job's model.tar.gz) without letting
them write outside the folder they are extracted into.

Every member is checked before a single byte is written: no absolute names, no '..'
components, no duplicate names, only regular files, directories, symlinks and hard links,
and every link must resolve inside the destination, following links the archive itself
creates (a symlink to '.' followed by 'link/..' is caught). Then the archive is extracted
into a fresh temporary folder beside the destination, with tarfile's ``filter="data"``
(Python 3.12, 3.11.4+) as a second line of defence, and renamed into place: an archive is
either extracted whole or not at all.

Standard library only.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

__all__ = ["UnsafeArchiveError", "safe_extract"]

_MAX_LINK_DEPTH = 40  # as the kernel's MAXSYMLINKS
# tarfile.FilterError is new in 3.11.4/3.12; `except ()` catches nothing.
_FILTER_ERRORS = getattr(tarfile, "FilterError", ())
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class UnsafeArchiveError(Exception):
    """The archive would write outside its destination, or holds something that is not
    plain data, or cannot be read at all. Nothing was extracted."""


class _Escape(Exception):
    pass


def _normalise(name: str) -> list[str]:
    """Member name as path components; '.' and empty parts dropped."""
    return [part for part in name.split("/") if part not in ("", ".")]


def _resolve(parts: list[str], links: dict[tuple, str], depth: int = 0) -> list[str]:
    """Resolve ``parts`` (relative to the root) through the archive's own symlinks, as the
    file system would after extraction; raise _Escape if it ever leaves the root."""
    if depth > _MAX_LINK_DEPTH:
        raise _Escape("too many levels of symbolic links")
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            if not resolved:
                raise _Escape("leaves the destination")
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get(tuple(resolved))
        if target is not None:
            if target.startswith("/"):
                raise _Escape("points to an absolute path")
            base = resolved[:-1]
            resolved = _resolve(base + [p for p in target.split("/") if p not in ("", ".")],
                                links, depth + 1)
    return resolved


def _check_members(members: list[tarfile.TarInfo], archive: Path) -> None:
    def fail(member: tarfile.TarInfo, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{archive}: member {member.name!r} {why}; nothing was"
                                  " extracted")

    seen: dict[tuple, tarfile.TarInfo] = {}
    links: dict[tuple, str] = {}
    for member in members:
        name = member.name
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise fail(member, "has an absolute path")
        parts = _normalise(name)
        if ".." in parts:
            raise fail(member, "has a '..' component")
        if "\x00" in name:
            raise fail(member, "has a NUL character in its name")
        if not parts:
            if member.isdir():
                continue  # './' itself
            raise fail(member, "has an empty name")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            kind = ("a FIFO" if member.isfifo() else "a device file" if member.isdev()
                    else f"of tar type {member.type!r}")
            raise fail(member, f"is {kind}, not plain data")
        key = tuple(parts)
        earlier = seen.get(key)
        if earlier is not None and not (earlier.isdir() and member.isdir()):
            raise fail(member, "appears twice in the archive")
        seen[key] = member
        if member.issym():
            if member.linkname.startswith("/"):
                raise fail(member, f"is a symlink to the absolute path {member.linkname!r}")
            links[key] = member.linkname
    # Once every link is known: where does each member, and each link's target, end up?
    for member in members:
        parts = _normalise(member.name)
        if not parts:
            continue
        try:
            # The member's folder, through links (the member itself is what gets written).
            _resolve(parts[:-1], links)
            if member.issym():
                _resolve(parts[:-1] + _normalise(member.linkname), links)
            elif member.islnk():
                if member.linkname.startswith("/"):
                    raise _Escape("points to an absolute path")
                _resolve(_normalise(member.linkname), links)
        except _Escape as exc:
            what = ("symlink" if member.issym() else "hard link" if member.islnk()
                    else "path")
            target = f" -> {member.linkname!r}" if member.issym() or member.islnk() else ""
            raise fail(member, f"is a {what}{target} that {exc}") from None


def safe_extract(archive: Path, destination: Path) -> list[Path]:
    """Extract ``archive`` (.tar.gz, or any tar tarfile reads) into ``destination``, which
    must not exist yet or be an empty folder; return the paths of the files and links
    written, in archive order.

    Raises UnsafeArchiveError, naming the archive and the offending member, with nothing
    extracted; an archive that cannot be read (corrupt, truncated, not a tar) raises it too,
    since it cannot be extracted safely either.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} exists and is not an empty folder")
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            _check_members(members, archive)
            destination.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.",
                                            dir=destination.parent))
            try:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4: our checks stand alone
                    tar.extractall(staging, members=members)
                if destination.exists():
                    destination.rmdir()
                os.replace(staging, destination)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except _FILTER_ERRORS as exc:
        raise UnsafeArchiveError(f"{archive}: {exc}; nothing was extracted") from None
    except _READ_ERRORS as exc:
        raise UnsafeArchiveError(f"{archive} cannot be read as a tar archive ({exc});"
                                 " nothing was extracted") from None
    written = []
    for member in members:
        parts = _normalise(member.name)
        if parts and not member.isdir():
            written.append(destination.joinpath(*parts))
    return written
