"""The embedded MongoDB-compatible database (SecantusDB) for machines without MongoDB.

SecantusDB is GPL-2.0, so it only ever runs as a separate process that the console talks
to over the MongoDB wire protocol; it is never imported.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import socket
import sys
import time
from pathlib import Path

from gooseui.logs import log

logger = logging.getLogger("gooseui.embedded")

INSTALL_HINT = (
    "MONGO_URI is unset, so the console wants its embedded database, but SecantusDB is not "
    "installed: run `uv sync` (it is a dev dependency), or `pip install 'gooseui[embedded]'`, "
    "or set MONGO_URI to a MongoDB server."
)


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be started."""


def available() -> bool:
    """Whether the SecantusDB server can be started (looked up, not imported)."""
    return importlib.util.find_spec("secantus") is not None


def _die_with_parent() -> None:
    """Linux: the database gets SIGTERM if the console dies without stopping it (kill -9)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RESTART_DELAYS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 60.0  # a server up this long has its restart back-off reset


class EmbeddedMongo:
    """A SecantusDB child process on a free loopback port, restarted when it dies.

    `storage` is a directory (kept across restarts) or ":memory:" for a throwaway server.
    A server that exits on its own is started again on the same port with the same storage,
    so the console's MongoDB client reconnects by itself and no data is lost (an in-memory
    server comes back empty). `restarts` and `last_exit` say what happened.
    """

    def __init__(self, storage: Path | str, *, log_file: Path | None = None) -> None:
        self.storage = storage
        self.log_file = log_file
        self.port: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        if self.port is None:
            raise RuntimeError("the embedded database is not running")
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    async def start(self, wait_seconds: float = 30.0) -> str:
        """Start the server and return its URI once it accepts connections."""
        if not available():
            raise EmbeddedDatabaseError(INSTALL_HINT)
        if isinstance(self.storage, Path):
            self.storage.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        await self._spawn(wait_seconds)
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded database")
        return self.uri

    async def _supervise(self) -> None:
        failures = 0
        while self._process is not None:
            process = self._process
            up = time.monotonic()
            code = await process.wait()
            if self._process is not process:  # stopped on purpose
                return
            failures = 0 if time.monotonic() - up > STABLE_SECONDS else failures + 1
            self.last_exit = f"exit code {code} at {time.strftime('%H:%M:%S')}"
            log(
                logger,
                "embedded.died",
                logging.ERROR,
                code=code,
                storage=str(self.storage),
                log_file=str(self.log_file) if self.log_file else None,
            )
            while True:
                delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
                await asyncio.sleep(delay)
                try:
                    await self._spawn(30.0)
                    break
                except EmbeddedDatabaseError as exc:
                    log(logger, "embedded.restart_failed", logging.ERROR, error=str(exc))
                    failures += 1
            self.restarts += 1
            log(logger, "embedded.restarted", restarts=self.restarts, storage=str(self.storage))

    async def _spawn(self, wait_seconds: float) -> None:
        """Run the server on `self.port` and wait until it accepts connections."""
        started = time.perf_counter()
        out = self.log_file.open("ab") if self.log_file else asyncio.subprocess.DEVNULL
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "secantus",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.storage),
                "--log-level",
                "WARNING",
                # without it a killed server loses its last commits (measured: 32 of 200
                # inserts after kill -9), for ~0.5 ms an insert: a project is never lost
                *(["--sync-on-commit"] if isinstance(self.storage, Path) else []),
                preexec_fn=_die_with_parent,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + wait_seconds
        while True:
            if self._process.returncode is not None:
                self._process = None
                raise EmbeddedDatabaseError(
                    f"the embedded database exited with code {self._process.returncode} at start"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    process, self._process = self._process, None
                    process.kill()
                    await process.wait()
                    raise EmbeddedDatabaseError(
                        f"the embedded database did not answer within {wait_seconds:.0f} s"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        log(
            logger,
            "embedded.started",
            uri=self.uri,
            storage=str(self.storage),
            ms=round((time.perf_counter() - started) * 1000),
        )

    async def stop(self) -> None:
        """Stop the server: politely first, then for good."""
        process, self._process = self._process, None
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        log(logger, "embedded.stopped", storage=str(self.storage))
