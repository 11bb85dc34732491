"""Safe file handling for the set-up and the caches: atomic writes, locks, checksums.

* ``atomic_write(path)`` writes to a temporary file *beside* ``path`` and renames
  it into place only when the write succeeded, so a reader never sees half a
  file, and a ``TMPDIR`` on another file system (``/dev/shm`` on many HPC
  systems) does not matter.
* ``locked(path)`` holds an exclusive lock on ``path`` for a block, so that two
  set-ups run at once take turns instead of doing the same work side by side.
* ``sha256`` and ``file_record``/``check_record`` record a file's size and
  SHA-256 and check a file against that record later.
* ``check_writable(folder)`` says clearly when a folder cannot be written to.
"""

import hashlib
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


class ReadOnlyFolderError(PermissionError):
    """A folder the lesson must write to is read-only. ``str(error)`` says what to do."""

    @property
    def fix(self):
        return str(self)


def folder_advice(folder, variable):
    return (f"The folder {folder} is read-only, so the lesson cannot save files there. Make it "
            f"writable (`chmod -R u+w {folder}`), or point the environment variable {variable} "
            "at a folder you can write to.")


def check_writable(folder, variable="XAI_LESSON_CACHE"):
    """Create ``folder`` if needed and prove it can be written to, or raise ``ReadOnlyFolderError``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise ReadOnlyFolderError(f"{folder_advice(folder, variable)} ({error.strerror or error})") from error
    return folder


@contextmanager
def atomic_write(path, mode="wb", variable="XAI_LESSON_CACHE", **open_kwargs):
    """Open a temporary file next to ``path`` for writing; on success rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as error:
        if isinstance(error, PermissionError) or error.errno == 30:  # EROFS: read-only file system
            raise ReadOnlyFolderError(folder_advice(path.parent, variable)) from error
        raise
    try:
        with open(handle, mode, **open_kwargs) as stream:
            yield stream
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes files private; give the usual mode
        os.replace(name, path)
    except BaseException:
        if os.path.exists(name):
            os.unlink(name)
        raise


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path, content, **kwargs):
    with atomic_write(path, "wb", **kwargs) as stream:
        stream.write(content)


def write_text(path, text, **kwargs):
    with atomic_write(path, "w", encoding="utf-8", newline="", **kwargs) as stream:
        stream.write(text)


@contextmanager
def locked(lock_path, what="the set-up", wait_message=True):
    """Hold an exclusive lock on ``lock_path`` (created if needed) for the block.

    A second process that asks for the same lock waits, and says once that it is
    waiting. The lock is released when the block ends or the process dies.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as stream:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    stream.seek(0)
                    msvcrt.locking(stream.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.5)
            try:
                yield
            finally:
                stream.seek(0)
                msvcrt.locking(stream.fileno(), msvcrt.LK_UNLCK, 1)
            return
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_message:
                print(f"Another process is running {what}; waiting for it to finish ...", flush=True)
            fcntl.flock(stream, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def sha256(path):
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# SHA-256 of the files hashed in this process, by (device, inode, size, mtime_ns): a file
# that keeps all four is not read again (an ordinary write changes its mtime).
_DIGESTS = {}


def _identity(path):
    status = Path(path).stat()
    return status, (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def sha256_once(path):
    """``sha256(path)``, computed at most once per process for an unchanged file."""
    _, key = _identity(path)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256(path)
    return _DIGESTS[key]


def file_record(path):
    """What ``check_record`` needs to recognise ``path`` later: its size, SHA-256 and mtime."""
    status, _ = _identity(path)
    return {"bytes": status.st_size, "sha256": sha256_once(path), "mtime_ns": status.st_mtime_ns}


def check_record(path, record, full=False):
    """Problem with ``path`` compared with ``record`` (from ``file_record``), or None if it matches.

    The size is always compared. The SHA-256 is computed when ``full`` is true,
    or when the file's modification time differs from the recorded one (any
    ordinary write changes it), and at most once per process for an unchanged
    file.
    """
    path = Path(path)
    if not path.exists():
        return f"{path.name} is missing"
    status, key = _identity(path)
    if status.st_size != record.get("bytes"):
        return f"{path.name} has {status.st_size:,} bytes instead of {record.get('bytes', 0):,}"
    if key not in _DIGESTS and not full and status.st_mtime_ns == record.get("mtime_ns"):
        return None
    if sha256_once(path) != record.get("sha256"):
        return f"{path.name} has been changed: its SHA-256 differs from the one recorded"
    return None


def load_arrays(paths, record_path):
    """NumPy arrays saved by ``save_arrays``, or None if any is missing, changed or not finite.

    A cache that fails its check gets a warning that names the problem, and None,
    so that the caller computes the arrays again and saves them over it.
    """
    import json
    import warnings

    import numpy as np

    paths = [Path(p) for p in paths]
    if not all(p.exists() for p in paths):
        return None
    try:
        records = json.loads(Path(record_path).read_text())
    except (OSError, ValueError):
        return None  # written before sizes and checksums were recorded: compute again
    arrays, problem = [], None
    for path in paths:
        problem = check_record(path, records.get(path.name, {}))
        if problem is None:
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                problem = f"{path.name} cannot be read ({error})"
            else:
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    problem = f"{path.name} holds NaN or infinite values"
        if problem:
            warnings.warn(f"The cached file {path.parent / problem}; computing it again.", UserWarning, stacklevel=3)
            return None
        arrays.append(array)
    return arrays


def save_arrays(paths, arrays, record_path, variable="XAI_LESSON_CACHE"):
    """Save arrays as .npy files (each written atomically), then a record of their sizes and SHA-256.

    A read-only cache folder gives a warning that names the folder; the arrays are
    then simply not cached.
    """
    import json
    import warnings

    import numpy as np

    try:
        for path, array in zip(paths, arrays):
            with atomic_write(path, variable=variable) as stream:
                np.save(stream, array, allow_pickle=False)
        records = {Path(p).name: file_record(p) for p in paths}
        write_text(record_path, json.dumps(records, indent=1), variable=variable)
    except ReadOnlyFolderError as error:
        warnings.warn(f"Results are not cached. {error}", UserWarning, stacklevel=3)
