"""Writing outputs without destroying anything: the rules, each owned by one function that every command calls.

- `claim_output` (issue 19, rule 1: never destroy), called for every output before any work starts:
  - an output is never an input of the command, nor the same file by another spelling, a symbolic link or a
    hard link (compared by resolved path and by inode), nor inside an input folder; an output folder is never an
    input folder, inside one or holding one. Not even with `--overwrite`.
  - an existing output is replaced only with `--overwrite`, and only if this toolkit wrote it: images carry
    `Software: sr-toolkit` (EXIF), ONNX files `producer_name: sr-toolkit`, JSON reports `"written_by"`, folders
    (prepared data sets, stores) a `.sr-toolkit-output.json` listing their files. Anything else is the user's
    and is refused, naming it, whatever the options.
  - an output whose path is a symbolic link is refused: nothing is written through a link, nor a link replaced.
  - two commands never write one output at once: the claim holds an exclusive `flock` on a hidden lock file
    beside the output (inside it, for a folder of outputs) until the command ends; the second is refused in one
    line naming the output and the pid of the first.
- `writer_command` (rule 4, writers): SIGINT, SIGTERM and SIGHUP become an exception, so that every partial file
  is removed on the way out as on an error or a full disk; the command prints one `interrupted:` line and exits
  128 + the signal (130, 143, 129). Hidden temporaries left by an earlier run that was killed outright (SIGKILL)
  are recognised by our own naming and removed by the next claim of that output (`remove_leftovers`).
- An output is complete or absent (`atomic_write`, `atomic_write_tree`): written under a hidden temporary name
  in its own folder and renamed over the target only once complete. A full disk, an unwritable folder or a
  crash leaves no 0-byte or half-written file, and the error names the path. Files get the permissions the
  user's umask gives any new file.

numpy-free and torch-free: the deployment path (`export/upscale.py`) uses it.
"""

import atexit
import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import stat
import sys
import threading
import time
from pathlib import Path

from sr_models.errors import UserError
from sr_models.starting import is_starting_handler

WRITTEN_BY = "sr-toolkit"  # the mark this toolkit leaves in what it writes
FOLDER_MARK = ".sr-toolkit-output.json"  # inside every folder written whole: the mark and the folder's file list
LOCK_NAME = ".sr-toolkit.lock"  # inside a folder of outputs; `.NAME.sr-toolkit.lock` beside a single output
TEMPORARY_KINDS = ("partial", "old", "scratch")  # `.NAME.PID.sr-toolkit-KIND`: our hidden temporaries, nothing else
IMAGE_MARK_SUFFIXES = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")  # BMP has nowhere to carry a mark
EXIF_SOFTWARE = 0x0131
TEMPORARY_TAG = "sr-toolkit-"  # in every temporary name of ours (partial_path): what remove_leftovers matches


class OutputError(UserError):
    """An output that cannot or must not be written; the message names the path and the problem."""


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _umask():
    mask = os.umask(0)  # the only portable way to read it is to set it; restored at once
    os.umask(mask)
    return mask


# ---- temporaries: named so that we, and only we, recognise them ------------------------------------------


def partial_path(path, kind="partial"):
    """The hidden temporary name beside `path`: never listed as an image, never mistaken for the output."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{TEMPORARY_TAG}{kind}")


def _leftover_pattern(name):
    # `.NAME.PID.sr-toolkit-KIND` and what our writers nest under it: `.NAME.PID.sr-toolkit-partial.partial` (a
    # store), `..NAME.PID.sr-toolkit-partial.PID.sr-toolkit-scratch-*` (an export's scratch folder). The tag is what
    # makes the name ours: a user's `.photos.2024.old` backup has the shape of a temporary but not the tag.
    kinds, tag = "|".join(TEMPORARY_KINDS), re.escape(TEMPORARY_TAG)
    nested = rf"(\.partial|\.\d+\.{tag}scratch-\w+)?"
    return re.compile(rf"^\.+{re.escape(name)}\.\d+\.{tag}({kinds})(-\w+)?{nested}$")


def remove_leftovers(path):
    """Remove the hidden temporaries an earlier run of ours left for `path` when it was killed (SIGKILL, power).

    Only names of our own making for this very output; called with the output's lock held, so no live writer's.
    """
    path = Path(path)
    pattern = _leftover_pattern(path.name)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if pattern.match(entry.name):
            _remove(entry)


def _remove(entry):
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    except OSError:
        pass  # the folder itself is gone or unwritable: there is nothing we could have left in it


# ---- writing: complete or absent ---------------------------------------------------------------------------


def publish(partial, path):
    """Give a finished temporary file the user's umask permissions and rename it onto `path` (atomic).

    A rename replaces a symbolic link at `path` itself, never the file it points to."""
    os.chmod(partial, 0o666 & ~_umask())
    os.replace(partial, path)


def atomic_write(path, write):
    """Call `write(temporary_path)`, then rename the result onto `path`; on any failure nothing is left behind.

    OSError (disk full, permission, vanished folder) becomes an OutputError naming `path`; other errors (a bug,
    an interrupt) propagate after the temporary file is removed.
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
        _remove(partial)


def atomic_write_text(path, text):
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def write_report(path, data):
    """A JSON report, marked as ours (`"written_by"`), so that `--overwrite` may later replace it."""
    atomic_write_text(path, json.dumps({"written_by": WRITTEN_BY, **data}, indent=2) + "\n")


def atomic_write_tree(folder, write):
    """`write(temporary_folder)`, then swap the result in for `folder` (an existing one is replaced only once the
    new one is complete, and removed after): the output folder is whole, the old one, or absent. The folder gets
    our mark, listing what it holds."""
    folder = Path(folder)
    partial, old = partial_path(folder), partial_path(folder, "old")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        names = sorted(p.name for p in partial.iterdir())
        (partial / FOLDER_MARK).write_text(json.dumps({"written_by": WRITTEN_BY, "files": names}) + "\n")
        if folder.exists():
            os.replace(folder, old)
        os.replace(partial, folder)
    except OSError as error:
        raise OutputError(f"{folder}: cannot write ({_one_line(error)})") from None
    finally:
        for leftover in (partial, old):
            _remove(leftover)


def open_append(path):
    """A log file opened for appending, never through a symbolic link (O_NOFOLLOW: a link is refused)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({_one_line(error)})") from None
    return os.fdopen(fd, "a")


# ---- rule 1: never destroy -----------------------------------------------------------------------------------


MARKED_KINDS = {".json": "report", ".onnx": "onnx", **{suffix: "image" for suffix in IMAGE_MARK_SUFFIXES}}


def not_ours(path, writes=None):
    """None if `path` was written by this toolkit (it carries our mark), else why it is taken for the user's.

    `writes`: what the command would put there ("report", "onnx" or "image"; None: told by the suffix). Only a file
    of ours of that very kind may be replaced: a JSON report never replaces an exported model of ours named
    `--json m.onnx`, whatever the suffix says."""
    path = Path(path)
    if path.is_dir():
        try:
            listed = set(json.loads((path / FOLDER_MARK).read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return f"no {FOLDER_MARK} in it"
        foreign = sorted(p.name for p in path.iterdir() if p.name != FOLDER_MARK and p.name not in listed)
        return f"it holds files it did not write: {', '.join(foreign[:3])}" if foreign else None
    suffix = path.suffix.lower()
    kind = writes or MARKED_KINDS.get(suffix)
    try:
        if kind == "report":
            data = json.loads(path.read_text())
            ours = isinstance(data, dict) and data.get("written_by") == WRITTEN_BY
            return None if ours else 'not a report of ours: no "written_by" mark'
        if kind == "onnx":
            import onnx  # deferred: only ONNX outputs need it

            producer = onnx.load(str(path), load_external_data=False).producer_name
            return None if producer == WRITTEN_BY else f"its producer is {producer or 'not named'}"
        if kind == "image":
            from sr_models.images import open_image  # deferred: images imports this module; it stays light

            with open_image(path, name=str(path)) as (image, _):  # the one opener: explicit formats, header only
                software = image.getexif().get(EXIF_SOFTWARE) or image.info.get("Software")
            return None if software == WRITTEN_BY else "no Software: sr-toolkit mark"
    except Exception as error:  # unreadable as what the command writes: certainly not a file we can vouch for
        return f"not readable as a {kind} ({_one_line(error)[:80]})"
    if suffix == ".bmp":
        return "a BMP file has nowhere to carry our mark"
    return f"a {suffix or 'suffixless'} file carries no mark of ours"


def _identities(path):
    """(device, inode) of `path` (resolved) and of every folder above it that exists: what it is and lies inside."""
    chain = []
    for entry in (path, *path.parents):
        try:
            info = entry.stat()
        except OSError:
            continue
        chain.append((info.st_dev, info.st_ino))
    return chain


def _holds_inode(folder, identity):
    """Whether a file under `folder` is `identity` (device, inode): a hard link elsewhere to one of its files."""
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                info = os.stat(os.path.join(root, name), follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == identity:
                return True
    return False


def _check_not_input(path, inputs, kind):
    resolved = Path(os.path.abspath(path)).resolve()
    own = _identities(resolved)  # own[0] is the output itself when it exists
    exists = resolved.exists()
    for source in inputs:
        source = Path(source)
        if not source.exists():
            continue  # a hub name or a missing path: the command names it when it reads it
        source_resolved = source.resolve()
        source_id = (source.stat().st_dev, source.stat().st_ino)
        source_chain = _identities(source_resolved)
        if kind == "file":
            if resolved == source_resolved or (exists and own[0] == source_id):
                raise OutputError(
                    f"{path}: is an input of this command; choose another output (inputs are never replaced)"
                )
            if source.is_dir() and source_id in own:
                raise OutputError(
                    f"{path}: is inside the input folder {source}; choose an output elsewhere, so that "
                    "no input is replaced and no output is read as an input"
                )
            if source.is_dir() and exists and resolved.stat().st_nlink > 1 and _holds_inode(source, own[0]):
                raise OutputError(
                    f"{path}: is an input of this command (a hard link to a file in {source}); choose "
                    "another output (inputs are never replaced)"
                )
            continue
        inside = resolved == source_resolved or source_id in own  # own includes the output itself
        holds = exists and own[0] in source_chain
        if source.is_dir() and inside:
            raise OutputError(
                f"{path}: is (inside) the input folder {source}; choose an output folder elsewhere, so "
                "that no input is replaced and no output is read as an input"
            )
        if (source.is_dir() or kind == "tree") and (holds or resolved in source_resolved.parents):
            raise OutputError(
                f"{path}: holds the input {source}; choose an output folder elsewhere, so that no input is replaced"
            )


def claim_output(path, *, inputs=(), overwrite=False, kind="file", option="--overwrite", lock=True, writes=None):
    """Make sure writing `path` destroys nothing, and hold it for this command. Call it for every output before any
    work starts, so that a refusal loses nothing.

    kind: "file" (one file, replaced whole), "tree" (a folder replaced whole: a prepared data set, a store) or
    "folder" (a folder the command writes files into; claim each file too, with lock=False: the folder's lock
    covers them).
    `inputs`: every file and folder the command reads. `writes`: what kind of file it writes there (not_ours).
    Raises OutputError naming `path` and the problem.
    """
    path = Path(path)
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise OutputError(f"{path}: {above} is a file, not a folder")
    if kind == "file" and path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if kind != "file" and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, not a folder")
    _check_not_input(path, inputs, kind)
    if path.is_symlink() and kind != "folder":  # a folder of outputs may be a link the user made to a disk
        raise OutputError(
            f"{path}: is a symbolic link; outputs are never written through a link nor replace one: "
            "choose another output"
        )
    held = OutputLock(path, folder=kind == "folder") if lock else None
    try:
        if kind != "folder":
            _check_no_other_writer(path, lone=lock)
            remove_leftovers(path)
            _check_replaceable(path, overwrite=overwrite, option=option, writes=writes)
        elif lock:
            _check_no_lone_writer_inside(path)
    except BaseException:
        if held is not None:
            held.release()
        raise
    return held


def _check_no_other_writer(path, *, lone):
    """Refuse `path` when another command holds the lock that covers it from the other side: for a lone output
    (its own lock taken), a folder writer's lock on the folder it lies in (a folder upscale into that folder); for a
    file claimed under this command's folder lock, a lone writer's lock on that one file. Each command takes its
    own lock before it looks at the other's, so of two started together at least one sees the other."""
    lock_path = path.parent / LOCK_NAME if lone else OutputLock.lock_path_of(path)
    holder = OutputLock.holder(lock_path)
    if holder is not None:
        writer = f"its folder {path.parent} is" if lone else "it is"
        raise OutputError(
            f"{path}: {writer} being written by another command of this toolkit (pid {holder}); wait "
            "for it to end, or choose another output"
        )


def _check_no_lone_writer_inside(folder):
    """A folder writer (its lock taken) refuses a folder in which another command is writing a lone output, whatever
    its name: the same exclusion as _check_no_other_writer, seen from the folder's side."""
    if not folder.is_dir():
        return
    for lock_path in sorted(folder.glob(f".*{LOCK_NAME}")):
        if lock_path.name == LOCK_NAME:
            continue
        holder = OutputLock.holder(lock_path, remove_stale=True)  # a killed writer's: this folder writer's to clear
        if holder is not None:
            output = folder / lock_path.name[1 : -len(LOCK_NAME)]
            raise OutputError(
                f"{folder}: {output.name} in it is being written by another command of this toolkit "
                f"(pid {holder}); wait for it to end, or choose another output folder"
            )


def _check_replaceable(path, *, overwrite, option, writes=None):
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return  # new, or an empty folder: nothing to lose
    reason = not_ours(path, writes)
    if reason is not None:
        raise OutputError(
            f"{path}: already exists and was not written by this toolkit ({reason}); it is never "
            "replaced, not even with --overwrite: choose another output"
        )
    if not overwrite:
        raise OutputError(f"{path}: already exists; pass {option} to replace it, or choose another output")


def foreign_lock_file(fd):
    """Why the file open at fd (found under our lock file's name) is not a lock file of ours, or None. Ours hold a
    pid line, or nothing (a holder that hit a full disk); anything else is the user's, and locking it would truncate it
    to our pid and remove it at the end."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    content = os.pread(fd, 64, 0)
    if info.st_size > 32 or not re.fullmatch(rb"(\d+\n?)?", content):
        return "holds something else than a pid"
    return None


def _holder_pid(fd):
    """The pid written in a held lock file: a holder writes it just after it takes the lock, so wait a moment."""
    for _ in range(20):
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid:
            return pid
        time.sleep(0.005)
    return "unknown"


class OutputLock:
    """An exclusive `flock` on a hidden lock file for one output, held until the command ends (the kernel drops
    it however the process ends). The lock file is opened with O_NOFOLLOW and holds the holder's pid."""

    held = []

    def __init__(self, path, *, folder=False):
        self.path = Path(path)
        self.made = []  # folders made to hold the lock: removed at release if nothing was written into them
        self.fd = None  # set before anything can fail: release() reads it
        self.lock_path = self.path / LOCK_NAME if folder else self.lock_path_of(self.path)
        where = self.path if folder else self.path.parent
        for missing in reversed([p for p in (where, *where.parents) if not p.exists()]):
            try:
                missing.mkdir()
            except FileExistsError:
                continue
            except OSError as error:
                self.release()
                raise OutputError(f"{self.path}: cannot write ({_one_line(error)})") from None
            self.made.append(missing)
        while self.fd is None:
            self.fd = self._take()
        OutputLock.held.append(self)

    @staticmethod
    def lock_path_of(path):
        """The lock file of a single output (a folder's is `folder / LOCK_NAME`)."""
        return path.with_name(f".{path.name}{LOCK_NAME}")

    @classmethod
    def holder(cls, lock_path, *, remove_stale=False):
        """The pid (as written, or "unknown") of another process holding `lock_path`, or None: a look that takes
        nothing (a shared lock, dropped at once) and never creates or follows the file. `remove_stale`: a lock
        file of ours that nobody holds (a killed command's) is removed; a user's file under that name never is."""
        if any(lock.lock_path == lock_path for lock in cls.held):
            return None  # this command's own
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:  # none there (the usual case), or not a file we could lock: a writer would be refused at it
            return None
        try:
            if foreign_lock_file(fd):
                return None  # a user's file under our name: the writers refuse it themselves
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _holder_pid(fd)
            if remove_stale:  # a writer taking it now finds its file gone and makes a new one (OutputLock._take)
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
            return None  # free: a killed command's stale file (closing drops the shared lock)
        finally:
            os.close(fd)

    def _take(self):
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except IsADirectoryError:
            self.release()
            raise OutputError(
                f"{self.lock_path}: is this toolkit's lock file name, but is a folder; it is left as it "
                "is: move it away, or choose another output"
            ) from None
        except OSError as error:  # ELOOP: the lock file is a link; EACCES, EROFS, ...
            self.release()
            raise OutputError(
                f"{self.path}: cannot take its lock file {self.lock_path.name} ({_one_line(error)})"
            ) from None
        foreign = foreign_lock_file(fd)
        if foreign:
            os.close(fd)
            self.release()
            raise OutputError(
                f"{self.lock_path}: is this toolkit's lock file name, but {foreign}; it is left as it is: "
                "move it away, or choose another output"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            self.release()
            raise OutputError(
                f"{self.path}: being written by another command of this toolkit (pid {holder}); wait "
                "for it to end, or choose another output"
            ) from None
        try:  # the file may have been removed by the holder we waited for: lock the one now at that name
            current = os.stat(self.lock_path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is None or current.st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
        try:  # the pid is for the second command's message only: a full disk leaves the lock held and unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        return fd

    def release(self):
        if self.fd is not None:
            try:
                os.unlink(self.lock_path)  # still ours: nobody else can hold it while we do
            except OSError:
                pass
            os.close(self.fd)  # unlocks
            self.fd = None
        for made in reversed(self.made):
            try:
                made.rmdir()  # only if still empty: a refused or failed command leaves no new folder behind
            except OSError:
                pass
        self.made = []
        if self in OutputLock.held:
            OutputLock.held.remove(self)

    @classmethod
    def release_all(cls):
        for lock in list(cls.held):
            lock.release()


atexit.register(OutputLock.release_all)


# ---- rule 4: writers clean up on a signal ------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM, SIGHUP) turned into an exception, so that `finally` blocks remove partial files."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received = []
_command_pid = []  # the process whose main the handlers were installed for


def _raise_interrupted(signum, frame):
    if _command_pid and os.getpid() != _command_pid[0]:
        # A forked worker (datasets' map with num_proc, a multiprocessing pool) inherits the handler. Its parent
        # decides: Ctrl-C and hang-ups reach the whole group and stop the parent, which ends its pool with SIGTERM.
        # On SIGTERM a worker leaves quietly (multiprocessing ends a process on SystemExit without a traceback) by
        # unwinding, not by dying of the signal: a worker waiting for a task holds the task queue's lock, and one that
        # dies holding it hangs the pool's terminate forever. Raising Interrupted instead would print a traceback per
        # worker, and ignoring SIGTERM would leave workers that the pool's terminate never ends.
        if signum == signal.SIGTERM:
            # It leaves silently: the exit may unwind through code that reports what interrupts it (after-fork hooks,
            # weakref callbacks, a writer's close), and those reports are not the user's to read.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            raise SystemExit(128 + signum)
        return
    if _received:
        return  # one is on its way out: let the clean-up finish
    _received.append(signum)
    threading.Thread(target=_end_stuck_workers, daemon=True, name="end-stuck-workers").start()
    raise Interrupted(signum)


STUCK_WORKER_SECONDS = 10


def _end_stuck_workers():
    """Once a signal has stopped the command, worker processes still alive after STUCK_WORKER_SECONDS are killed.
    A multiprocessing pool that is ending can wait forever for a worker it started while it was being stopped (one
    forked to replace a worker that had left, blocked on the task queue's lock: seen about 1 in 40 times with
    SIGTERM to the group during `prepare --num-proc 2`); the clean-up, and the `interrupted:` line, then never come.
    Killing it lets the pool's join return; the command's own clean-up removes what the workers wrote."""
    time.sleep(STUCK_WORKER_SECONDS)
    if _received:  # else the command's clean-up has finished (writer_command clears it): nothing is stuck
        kill_workers()


def kill_workers():
    """SIGKILL every worker process this one started through multiprocessing (or datasets' `multiprocess`)."""
    for name in ("multiprocess", "multiprocessing"):  # datasets' pools use `multiprocess`, ours the standard one
        module = sys.modules.get(name)
        try:
            for child in module.active_children() if module else ():
                child.kill()
        except Exception:  # a child that ended meanwhile, a set changing under us: the next one still goes
            continue


def interrupted(message):
    """Print one `interrupted: <message>` line and exit 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    signum = _received[0] if _received else signal.SIGINT
    print(f"\ninterrupted: {message}", file=sys.stderr)
    sys.exit(128 + int(signum))


@contextlib.contextmanager
def removed_on_failure(leftovers):
    """For files another library writes and leaves behind when it fails or is interrupted: if the block raises
    (a signal included), the paths `leftovers()` names then are removed before the error goes on."""
    try:
        yield
    except BaseException:
        for path in leftovers():
            with contextlib.suppress(OSError):
                path.unlink()
        raise


@contextlib.contextmanager
def on_interrupt(message):
    """Inside a writer command: a signal ends the block in one `interrupted: <message>` line (exit 128 + N), also
    when a library turns the interrupt into an error of its own while unwinding (datasets' map with num_proc raises
    a TimeoutError from its pool's clean-up in place of the KeyboardInterrupt)."""
    try:
        yield
    except KeyboardInterrupt:
        interrupted(message)
    except Exception:
        if not _received:
            raise
        interrupted(message)


def writer_command(main):
    """Decorate a command's `main`: signals raise `Interrupted` while it runs (so partial files go), an interrupt
    not handled by `main` ends in one `interrupted:` line, and the output locks are released at the end."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        previous = {}
        _received.clear()
        _command_pid[:] = [os.getpid()]
        for number in _SIGNALS:
            try:
                previous[number] = signal.signal(number, _raise_interrupted)
            except ValueError:  # not the main thread: leave the signals as they are
                break
        command_process = any(is_starting_handler(handler) for handler in previous.values())
        try:
            with on_interrupt("nothing more written, no partial file left"):
                return main(*args, **kwargs)
        except SystemExit as leaving:
            running = any(thread.name == "onnxruntime-run" and thread.is_alive() for thread in threading.enumerate())
            if not (command_process and (_received or running)):
                raise
            if not isinstance(leaving.code, int) and leaving.code is not None:
                print(leaving.code, file=sys.stderr)  # what Python would print on its way out (the error line)
            # Interrupted (or stopped while onnxruntime still runs a node in its thread: export/runtime.run_in_thread),
            # its clean-up done and its line printed: the command's process leaves now. The interpreter's own exit
            # would join what libraries left running (a pool's threads, forking a worker while the exit holds the
            # locks they need: a hang seen with SIGTERM during `prepare --num-proc 2`), or end a thread inside
            # onnxruntime's C++ code.
            OutputLock.release_all()
            kill_workers()  # what the exit would have ended (multiprocessing's atexit), without waiting on them
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(leaving.code if isinstance(leaving.code, int) else 0 if leaving.code is None else 1)
        finally:
            OutputLock.release_all()
            for number, handler in previous.items():
                # The command's process (its handler was the starting one): what is left is the exit itself, its
                # line and status already decided; a signal now would only kill it silently (exit -N, no line).
                signal.signal(number, signal.SIG_IGN if is_starting_handler(handler) else handler)
            _received.clear()

    return run
