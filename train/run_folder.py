"""A run folder belongs to one run.

- A new run takes a folder that does not exist or is empty. It also takes the folder of a run of this toolkit
  that stopped before it saved anything (the marker below, and nothing but the files a starting run writes):
  those files are replaced. Anything else (a finished or interrupted run, a user's own files) is refused.
- A resumed run continues in the folder that holds its checkpoint, never in one read from the checkpoint's
  saved config (a moved run folder still resumes where it now is).
- Two processes can never write into one run folder at once: the main process holds an exclusive lock
  (`fcntl.flock` on the marker file, released by the kernel when the process ends, however it ends) for the whole
  run. The lock is taken before the folder's contents are checked, so two runs started at the same instant
  cannot both pass the check.
"""

import fcntl
import os
import shutil
from pathlib import Path

from sr_models.files import foreign_lock_file
from train.config import ConfigError

MARKER = ".sr-toolkit-run.lock"  # hidden; holds the pid of the process that has the run
# What a run writes before its first checkpoint: a folder holding only these (and the marker) is a failed start.
STARTING_FILES = {"config.yaml", "log.jsonl", "tensorboard", "samples"}


def one_line(error):
    return " ".join(str(error).split())


def first_link_inside(folder):
    """The first symbolic link anywhere inside `folder` (never followed), or None. A run folder is the toolkit's:
    nothing in it is a link, so a link found there was planted and is refused before anything is written."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(root, name)):
                return Path(root, name)
    return None


class RunFolderLock:
    """The main process's claim on a run folder; `release()` (or process exit) lets it go."""

    held = {}  # run folder -> lock held by this process

    def __init__(self, run_dir, *, new_run):
        self.run_dir = Path(run_dir)
        marker = self.run_dir / MARKER
        try:
            created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if marker.is_symlink():
                raise ConfigError(
                    f"{marker}: is a symbolic link; the run lock is never written through a link "
                    "(it would truncate what it points to): remove the link"
                )
            had_marker = marker.exists()
            # O_NOFOLLOW: a marker that is a link to a user's file is refused, never truncated to our pid
            fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            foreign = foreign_lock_file(fd)
            if foreign:
                os.close(fd)
                raise ConfigError(
                    f"{marker}: is the run lock's name, but {foreign}; it is left as it is: move it away, "
                    "or choose another --output-dir"
                )
            self.file = os.fdopen(fd, "r+")
        except IsADirectoryError:
            raise ConfigError(
                f"{marker}: is the run lock's name, but is a folder; it is left as it is: move it away, "
                "or choose another --output-dir"
            ) from None
        except OSError as error:  # a path under a file, an unwritable parent, a read-only file system
            raise ConfigError(f"{self.run_dir}: cannot use it as the run folder ({one_line(error)})") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise ConfigError(
                f"{self.run_dir}: in use by another training process (pid {holder}); wait for it to "
                "end, or choose another --output-dir"
            ) from None
        if new_run:
            try:
                self.check_empty(had_marker)
            except ConfigError:  # refused: the folder is left exactly as it was found
                if not had_marker:
                    marker.unlink(missing_ok=True)
                if created:
                    self.run_dir.rmdir()
                raise
        link = first_link_inside(self.run_dir)
        if link is not None:  # samples/, checkpoints/ or a weights file made a link: writes would land in its target
            self.release()
            if not had_marker:  # refused: the folder is left exactly as it was found
                marker.unlink(missing_ok=True)
            raise ConfigError(
                f"{link}: is a symbolic link inside the run folder; a run never writes through a link "
                "(it would write into, or prune, what it points to): remove the link"
            )
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()
        self.held[self.run_dir.resolve()] = self

    def check_empty(self, had_marker):
        contents = sorted(p.name for p in self.run_dir.iterdir() if p.name != MARKER)
        failed_start = had_marker and set(contents) <= STARTING_FILES
        if contents and not failed_start:
            self.release()
            shown = ", ".join(contents[:5]) + (" ..." if len(contents) > 5 else "")
            what = "a run's checkpoints" if "checkpoints" in contents else "files that are not a new run's"
            raise ConfigError(
                f"{self.run_dir} already holds {what} ({shown}); a new run needs an empty or new "
                "folder: choose another --output-dir, or continue a run with --resume latest"
            )
        for name in contents:  # the files of a start that failed before its first checkpoint
            path = self.run_dir / name  # a link is removed itself, never what it points to
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def release(self):
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
        if self.held.get(self.run_dir.resolve()) is self:
            del self.held[self.run_dir.resolve()]

    @classmethod
    def release_all(cls):
        """Let go of every run folder this process holds (a run has ended: returned or raised)."""
        for lock in list(cls.held.values()):
            lock.release()
