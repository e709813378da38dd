"""Daemons for the tests' mounts, forked from a process that has imported fsobj already.

Each mount test starts a daemon, and starting Python and importing the daemon's modules
took most of its CPU time (0.45 of 0.7 s), several hundred times a run on two cores. A
test process starts one `ForkServer`; each mount is then `fsobj mount` run by a child that
it forks, with the test's arguments, environment, working directory, log and ready pipe:
the same daemon, started by `fsobj.cli.main.main`, as `python -m fsobj` starts it. So
are the `fsobj` commands that tests run (conftest.fsobj_cli), their output captured.
`fsobj` itself, the program, is run as one by test_cli.py and mount.sh.

    python tests/daemons.py   # the server, on the socket it is given as its stdin
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time


class Daemon:
    """A daemon that the fork server started: what the tests use of `subprocess.Popen`.
    It is the server's child, not ours: its end is seen through a pidfd, its exit status
    asked of the server."""

    def __init__(self, server: ForkServer, pid: int):
        self.server = server
        self.pid = pid
        self.returncode: int | None = None
        self._ended: int | None = None
        try:
            self._ended = os.pidfd_open(pid)
        except ProcessLookupError:  # it ended at once, and the server reaped it
            self.returncode = server.status(pid)

    def poll(self) -> int | None:
        return self.wait(0) if self._done(0) else None

    def _done(self, timeout: float | None) -> bool:
        return self._ended is None or bool(select.select([self._ended], [], [], timeout)[0])

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not self._done(timeout):
                raise subprocess.TimeoutExpired(f"fsobj daemon {self.pid}", timeout or 0)
            self.returncode = self.server.status(self.pid)
            if self._ended is not None:
                os.close(self._ended)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The server, seen from a test process: `start` forks a daemon there."""

    def __init__(self) -> None:
        # Packets: each request and answer arrives whole, as sent.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, __file__], stdin=theirs, close_fds=True, cwd="/"
        )
        theirs.close()

    def _ask(self, request: dict, fds: list[int] = ()) -> dict:
        with self._lock:
            socket.send_fds(self._socket, [json.dumps(request).encode()], list(fds))
            return json.loads(self._socket.recv(1 << 20))

    def start(self, argv: list[str], log: int, ready: int) -> Daemon:
        """`fsobj ARGV...` in a forked child, its output to `log`, `ready` its ready pipe
        (named in `argv` as the string "READY_FD")."""
        return self._fork(argv, [log, log, ready])

    def _fork(self, argv: list[str], fds: list[int]) -> Daemon:
        request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}
        return Daemon(self, self._ask(request, fds)["pid"])

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        """`fsobj ARGV...` as `subprocess.run(..., capture_output=True, text=True)` runs it."""
        out, err = os.pipe(), os.pipe()
        try:
            command = self._fork(argv, [out[1], err[1]])
        finally:
            os.close(out[1])
            os.close(err[1])
        chunks: dict[int, list[bytes]] = {out[0]: [], err[0]: []}
        open_ends = set(chunks)
        deadline = time.monotonic() + timeout
        try:
            while open_ends:
                left = deadline - time.monotonic()
                ready = select.select(list(open_ends), [], [], left)[0] if left > 0 else []
                if not ready:
                    command.kill()
                    raise subprocess.TimeoutExpired(["fsobj", *argv], timeout)
                for fd in ready:
                    piece = os.read(fd, 65536)
                    if piece:
                        chunks[fd].append(piece)
                    else:
                        open_ends.discard(fd)
            code = command.wait(max(0.0, deadline - time.monotonic()))
        finally:
            os.close(out[0])
            os.close(err[0])
        output, errors = (b"".join(chunks[fd]).decode(errors="replace") for fd in chunks)
        return subprocess.CompletedProcess(["fsobj", *argv], code, output, errors)

    def status(self, pid: int) -> int:
        return self._ask({"status": pid})["status"]

    def close(self) -> None:
        self._socket.close()
        self._process.wait()


def _serve(channel: socket.socket) -> None:
    """The server: fork a daemon per request; reap them, and say how each ended."""
    from fsobj.cli import main  # what every daemon imports, imported once here
    from fsobj.fuse import mount  # noqa: F401

    ended: dict[int, int] = {}
    condition = threading.Condition()

    def reap() -> None:
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                with condition:
                    condition.wait(0.1)
                continue
            with condition:
                ended[pid] = os.waitstatus_to_exitcode(status)
                condition.notify_all()

    threading.Thread(target=reap, daemon=True).start()
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3)
        if not message:
            return  # the test process went away
        request = json.loads(message)
        if "status" in request:
            pid = request["status"]
            with condition:
                condition.wait_for(lambda pid=pid: pid in ended)
                answer = {"status": ended.pop(pid)}
            channel.send(json.dumps(answer).encode())
            continue
        output, errors, *ready = fds
        pid = os.fork()
        if pid == 0:
            try:
                channel.close()
                os.dup2(output, 1)
                os.dup2(errors, 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.environ.clear()
                os.environ.update(request["env"])
                os.chdir(request["cwd"])
                argv = [str(ready[0]) if a == "READY_FD" else a for a in request["argv"]]
                code = main.main(argv)
            except SystemExit as leaving:
                code = leaving.code if isinstance(leaving.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code or 0)
        for fd in fds:
            os.close(fd)
        channel.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    _serve(socket.socket(fileno=0))
