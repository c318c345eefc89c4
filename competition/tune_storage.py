"""Where a tuning study lives and how its workers take turns.

:func:`storage_url` and :func:`open_storage` open the Optuna RDB storage of ``comp tune``:
the workspace's SQLite file by default (``tuning.db``, write-ahead log), or any RDB URL
given with ``--storage`` (PostgreSQL, MySQL), with heartbeats so that a dead worker's trial
is failed and retried. :class:`AskLock` serialises "count the study's trials, then ask for
one" across the workers of one study. :func:`masked` hides a URL's password in messages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import time
import warnings
from pathlib import Path

from filelock import FileLock

from competition.errors import InputError
from competition.workspace import Workspace


def storage_url(ws: Workspace, storage: str | None = None) -> str:
    """``--storage`` (any Optuna RDB URL), else the workspace's SQLite file.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; where only psycopg2 is
    installed (comp's dependency) the URL names it.
    """
    if not storage:
        return f"sqlite:///{ws.tuning_db}"
    # sqlalchemy: only a study's storage needs it
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception:  # noqa: BLE001 - open_storage says what is wrong with it
        return storage
    if url.drivername == "postgresql":
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return storage


def masked(url: str) -> str:
    """The URL without its password, for messages and files.

    >>> masked("postgresql+psycopg2://tuner:s3cret@db.example:5432/studies")
    'postgresql+psycopg2://tuner:***@db.example:5432/studies'
    """
    # sqlalchemy: only a study's storage needs it
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message must not fail
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(url: str, heartbeat: int = 60):
    """RDB storage with heartbeats: a trial whose worker died is failed after 2 * heartbeat
    seconds and queued again with the same parameters (up to 3 times)."""
    # optuna: only tuning needs it
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    _check_sqlite_file(url)
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                     grace_period=2 * heartbeat,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
            break
        except Exception as err:  # noqa: BLE001 - sqlalchemy's connection errors have many types
            # workers starting together on an empty database race to create Optuna's tables:
            # the loser finds them made on its next try
            if attempt < 2 and not isinstance(err, ImportError):
                time.sleep(1 + attempt)
                continue
            why = str(err).split("\n")[0].split(" (Background on this error")[0]      # not SQLAlchemy's dump
            raise InputError(f"cannot open the tuning storage {masked(url)}: {why}. Write an Optuna RDB URL, e.g. "
                             "sqlite:///tuning.db or postgresql://user:password@host:5432/db, with the server "
                             "running and the database created") from None
    if url.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(url: str) -> None:
    """A SQLite storage file that exists is a SQLite database, else one line with the fix (it printed
    SQLAlchemy's dump and offered the same file as the fix).

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "tuning.db"
    >>> _ = bad.write_bytes(b"garbage")
    >>> _check_sqlite_file(f"sqlite:///{bad}")
    Traceback (most recent call last):
    competition.errors.InputError: ...tuning.db: not a SQLite database (damaged, or another kind of file); it holds comp tune's studies: move it aside (e.g. `mv ...tuning.db ...tuning.db.bad`) and tune again (the studies start over), or name another with --storage
    """
    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///"):])
    if not path.is_file() or path.stat().st_size == 0:
        return                                        # a new or empty file: SQLite makes a database of it
    with path.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
            return
    raise InputError(f"{path}: not a SQLite database (damaged, or another kind of file); it holds comp tune's "
                     f"studies: move it aside (e.g. `mv {path} {path}.bad`) and tune again (the studies start "
                     "over), or name another with --storage")


def _fast_sqlite(engine) -> None:
    """A trial writes ~20 small transactions; with SQLite's default journal each one waits
    for an fsync (~15 ms here). The write-ahead log without a sync per commit keeps the
    file consistent (a power cut may lose the last trials, never corrupt it) and stays safe
    for several processes on one machine (not on a network file system: use PostgreSQL)."""
    # sqlalchemy: only a study's storage needs it
    from sqlalchemy import event

    def pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()         # connections made before the listener reconnect with it


class AskLock:
    """Serialises 'count the study's trials, then ask for one' across workers, so that the
    study stops at exactly ``--trials``: a lock file beside a SQLite file, an advisory lock
    for PostgreSQL / MySQL (released by the server when a worker dies)."""

    def __init__(self, url: str, study: str):
        # sqlalchemy: only a study's storage needs it
        from sqlalchemy.engine import make_url

        self._url, self._study = url, study
        self._file = self._engine = self._conn = None
        backend = make_url(url).get_backend_name()
        database = make_url(url).database
        if backend == "sqlite" and database and database != ":memory:":
            self._file = FileLock(database + ".lock")
        elif backend in ("postgresql", "mysql", "mariadb"):
            # sqlalchemy: only a study's storage needs it
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._engine, self._backend = create_engine(url, poolclass=NullPool), backend
        elif backend != "sqlite":
            warnings.warn(f"storage {backend}: no lock between workers; parallel workers may run a few "
                          "trials more than --trials", stacklevel=2)

    def acquire(self) -> None:
        # sqlalchemy: only a study's storage needs it
        from sqlalchemy import text

        if self._file is not None:
            self._file.acquire()
        elif self._engine is not None:
            self._conn = self._engine.connect()
            if self._backend == "postgresql":
                key = int.from_bytes(hashlib.sha1(f"comp-tune:{self._study}".encode()).digest()[:8], "big", signed=True)
                self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            else:
                self._conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": f"comp-tune:{self._study}"[:64]})
            self._conn.commit()

    def release(self) -> None:
        """Idempotent: the objective releases it as soon as its trial exists, the loop again after."""
        if self._file is not None and self._file.is_locked:
            self._file.release()
        elif self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()    # closing the session ends its advisory lock

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()

