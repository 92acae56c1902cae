"""What a process running flows does when told to stop: SIGTERM (a scheduler, `kill`, a Prefect worker
cancelling its run) or SIGINT (Ctrl-C).

Prefect turns SIGTERM into an exception in the main thread and marks the flow runs it unwinds Crashed,
with the reason; the output lock is released on the way out. What would still keep the process alive
for minutes, or lose what it said last:

- worker threads in the middle of a shard, or waiting for a GPU slot that another run holds: a thread
  of this module sees the signal the moment it arrives (`signal.set_wakeup_fd` reports every signal,
  whichever handler runs), asks them to stop (`core.stopping`: at their next batch, a slot wait at
  once), and the waves' thread pools stop waiting for them (`engines.StoppingThreadPoolTaskRunner`);
- anything else that hangs: `GRACE_S` after the signal the process ends regardless;
- logs still buffered for the Prefect server, and the temporary server a command may have started:
  delivered and stopped before the process ends (`end`).

Nothing is lost by ending early: a shard is committed by its manifest, written last, and a rerun of
the same command makes what was not committed (and sweeps a stopped writer's temporary files).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
from types import FrameType

from synthvision.core import stopping

GRACE_S = 20.0
LAST_WORDS_S = 15.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)
_watching = threading.Lock()
_watched: list[socket.socket] = []  # the wakeup socket's reading end, once watching
_deadline: list[threading.Timer] = []  # the timer that ends the process, once told to stop


def watch() -> None:
    """Watch this process for SIGTERM and SIGINT from now on (from the main thread; once per process)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _watching:
        if _watched:
            return
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        if previous != -1:  # an event loop of the main thread watches signals: leave them to it
            signal.set_wakeup_fd(previous)
            reader.close()
            writer.close()
            return
        signal.signal(signal.SIGTERM, _on_signal)  # Prefect's, within a flow, hands back to this one
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (nohup, &)
            signal.signal(signal.SIGINT, _on_signal)
        _watched.append(reader)
        threading.Thread(target=_observe, args=(reader, writer), daemon=True, name="synthvision-signals").start()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """The main thread's handler outside Prefect's: stop here, as Ctrl-C does."""
    stopping.request(signal.Signals(signum).name)
    raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)


def _observe(reader: socket.socket, writer: socket.socket) -> None:
    while True:
        signum = reader.recv(1)[0]
        if signum not in SIGNALS:
            continue
        name = signal.Signals(signum).name
        if _deadline:  # told already (Prefect also hands its SIGTERM on to the handler it replaced)
            continue
        stopping.request(name)
        print(
            f"synthvision: {name} received: stopping (work in progress is left uncommitted; rerun the same command "
            f"to resume), ending within {GRACE_S:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        timer = threading.Timer(GRACE_S, end, args=(128 + signum, f"still running {GRACE_S:.0f} s after {name}"))
        timer.daemon = True
        timer.start()
        _deadline.append(timer)


def end(status: int, why: str | None = None) -> None:
    """End the process now with `status`, after what a normal exit does (`_last_words`), for at most
    `LAST_WORDS_S`: a server that is gone must not hold the process."""
    if why:
        print(f"synthvision: {why}", file=sys.stderr, flush=True)
    last_words = threading.Thread(target=_last_words, daemon=True)
    last_words.start()
    last_words.join(timeout=LAST_WORDS_S)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # not sys.exit: that would wait for worker threads still in a batch nobody commits


def _last_words() -> None:
    """Deliver the logs buffered for the Prefect server, then run the exit handlers (among them Prefect's,
    which stops the temporary server a command without PREFECT_API_URL started)."""
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
    except Exception:  # no server, or it is gone: the logs stay in the terminal
        pass
    atexit._run_exitfuncs()


def end_if_stopped() -> None:
    """Called as a command returns: if it was told to stop, end the process now (its worker threads may
    still be in a batch whose result nobody will commit) with 128 + the signal's number."""
    reason = stopping.requested()
    if reason is None:
        return
    signum = signal.Signals[reason] if reason in signal.Signals.__members__ else signal.SIGTERM
    end(
        128 + signum,
        f"stopped by {reason}: every shard committed so far is kept; rerun the same command to resume",
    )
