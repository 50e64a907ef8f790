"""Atomic file writes: a reader sees the old file or the new one, never half.

Every file tf_asap writes for a user (run logs, checkpoints, models,
exported flatbuffers and C sources) goes through these helpers, so a crash or
Ctrl-C at any moment leaves each file whole.
"""

import contextlib
import json
import os
import tempfile

def _fsync_directory(directory):
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _write_atomically(path, write, suffix):
    """Calls `write(temporary_path)`, syncs it and renames it over `path`.

    The temporary file lives in the destination directory, so the rename is
    atomic (on POSIX and Windows); on any failure it is removed and `path` is
    left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=suffix
    )
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path, data):
    """Writes `data` to `path` so that readers see the old file or the new one.

    The bytes go to a temporary file in the same directory, are flushed to
    disk with `fsync`, and replace `path` with `os.replace`. A crash at any
    point leaves `path` whole.

    Args:
        path: Destination file; its directory is created if needed.
        data: The bytes to write.
    """

    def write(temporary):
        with open(temporary, "wb") as file:
            file.write(data)

    _write_atomically(path, write, ".tmp")


def atomic_write_text(path, text):
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, value):
    """Writes `value` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def atomic_save_model(model, path):
    """Saves a Keras model to a `.keras` file, atomically.

    Keras insists on the `.keras` suffix, so the temporary file carries it
    too.
    """
    _write_atomically(path, lambda temporary: model.save(temporary, overwrite=True), ".tmp.keras")
