"""Writing outputs without destroying anything: one rule, called by every command that writes a file.

- An output is complete or absent: it is written under a hidden temporary name in its own folder and renamed
  over the target only once complete (a rename within one file system is atomic). A full disk, an unwritable
  folder or a crash leaves no 0-byte or half-written file, and the error names the path.
- An output never replaces an input, and never replaces an existing file unless the user said so (`--overwrite`).
- Files get the permissions the user's umask gives any new file (a temporary file would otherwise keep 0600).

numpy-free and torch-free: the deployment path (`export/upscale.py`) uses it.
"""

import os
import shutil
from pathlib import Path

from sr_models.errors import UserError


class OutputError(UserError):
    """An output that cannot or must not be written; the message names the path and the problem."""


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _umask():
    mask = os.umask(0)  # the only portable way to read it is to set it; restored at once
    os.umask(mask)
    return mask


def partial_path(path):
    """The hidden temporary name beside `path`: never listed as an image, never mistaken for the output."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def publish(partial, path):
    """Give a finished temporary file the user's umask permissions and rename it onto `path` (atomic)."""
    os.chmod(partial, 0o666 & ~_umask())
    os.replace(partial, path)


def atomic_write(path, write):
    """Call `write(temporary_path)`, then rename the result onto `path`; on any failure nothing is left behind.

    OSError (disk full, permission, vanished folder) becomes an OutputError naming `path`; other errors (a bug,
    Ctrl-C) propagate after the temporary file is removed.
    """
    path = Path(path)
    partial = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        if not partial.is_file():
            raise OSError(f"the writer produced no file at {partial}")
        publish(partial, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({_one_line(error)})") from None
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is gone or unwritable: there is nothing we could have left in it


def atomic_write_text(path, text):
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def _same_file(a, b):
    try:
        return Path(a).resolve() == Path(b).resolve() or (Path(b).exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path, *, inputs=(), overwrite=False, option="--overwrite"):
    """Refuse to write `path` when it is one of `inputs`, a folder, or an existing file the user did not release.

    Call it for every output before any work starts, so that a refusal loses nothing.
    """
    path = Path(path)
    for source in inputs:
        if _same_file(path, source):
            raise OutputError(f"{path}: is an input of this command; choose another output (inputs are never replaced)")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a folder")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass {option} to replace it, or choose another output")


def check_output_folder(folder, *, input_folder=None):
    """An output folder must not be the input folder or lie inside it (a second run would read its own outputs)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; the output of a folder of images is a folder")
    if input_folder is not None:
        source, target = Path(input_folder).resolve(), folder.resolve()
        if target == source or source in target.parents:
            raise OutputError(f"{folder}: is (inside) the input folder {input_folder}; choose an output folder "
                              "elsewhere, so that no input is replaced and no output is read as an input")  # fmt: skip


def check_output_tree(folder, *, inputs=(), overwrite=False, option="--overwrite"):
    """An output that is a whole folder (a prepared data set): new or empty, or replaced only with `overwrite`;
    never an input folder, inside one, or holding one."""
    folder = Path(folder)
    for source in inputs:
        source, target = Path(source).resolve(), folder.resolve()
        if target == source or source in target.parents or target in source.parents:
            raise OutputError(f"{folder}: overlaps the input {source}; choose an output folder elsewhere")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError(f"{folder}: already exists and is not empty; pass {option} to replace it, or choose another")


def atomic_write_tree(folder, write):
    """`write(temporary_folder)`, then swap the result in for `folder` (an existing one is replaced only once the
    new one is complete, and removed after): the output folder is whole, the old one, or absent."""
    folder = Path(folder)
    partial, old = partial_path(folder), folder.with_name(f".{folder.name}.{os.getpid()}.old")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        if folder.exists():
            os.replace(folder, old)
        os.replace(partial, folder)
    except OSError as error:
        raise OutputError(f"{folder}: cannot write ({_one_line(error)})") from None
    finally:
        for leftover in (partial, old):
            shutil.rmtree(leftover, ignore_errors=True)
