# Fail2Ban Python action: blackhole banned addresses with BGP through the f2b-bgp daemon.
#
# The same ban, unban, prolong and flush requests as
# fail2ban/action.d/bgp-blackhole.conf, sent in-process over one persistent
# connection to the daemon's JSON-lines socket (docs/contracts.md), without a
# process per ban and without a shell. Requests are pipelined: ban() returns
# once the request is written, and a reader thread takes the daemon's answers
# in order and logs every refusal in fail2ban's log with the daemon's reason.
# Standard library only: fail2ban-server runs under the system python3, where
# f2b-bgp itself need not be installed.
#
# When the daemon cannot take a request (not running, restarting, not answering
# within the timeout), the request is appended to the daemon's queue file
# instead, as the .conf action does, and the daemon applies it in order when it
# is back. Requests unanswered when a connection broke are queued too (both are
# idempotent). Once something is queued, later requests are queued as well
# until the daemon reports the queue empty, so nothing overtakes it. A queue
# that cannot be written makes the ban fail in fail2ban's log.
#
# Use (the ".py" suffix is what selects a Python action):
#   [sshd]
#   enabled   = true
#   banaction = bgp-blackhole.py
# or with options:
#   action = bgp-blackhole.py[socket="/run/f2b-bgp/f2b-bgp.sock", timeout="5"]
#
# Options (fail2ban passes them as strings; extra ones such as port, protocol
# and chain from the stock action_ line are accepted and ignored):
#   socket            the daemon's API socket.  Default: $F2B_BGP_SOCKET, else
#                     /run/f2b-bgp/f2b-bgp.sock
#   timeout           seconds to wait for the daemon (connect, send, an answer
#                     to the oldest request in flight) before queueing; fail2ban
#                     gives Python actions no timeout of its own.  Default: 5
#   queue             the daemon's queue file.  Default: $F2B_BGP_QUEUE, else
#                     /var/lib/f2b-bgp/fail2ban.queue
#   retry             while requests are queued, seconds between attempts to
#                     reach the daemon (each asks whether it applied the queue).
#                     Default: 1
#   withdraw_on_stop  "true": withdraw the jail's routes when fail2ban stops or
#                     restarts it. Default "false": routes stay, the daemon
#                     withdraws each at its expiry; bans restored at start
#                     are handed over again with their original ban time.
#
# What each fail2ban event does:
#   ban, reban        ban: address, jail, bantime (-1 permanent, capped by the
#                     daemon's max_bantime), started = the ticket's ban time
#                     (the original one for restored bans, so the expiry is
#                     kept). Idempotent; "pending" (backend not acknowledged
#                     yet, the daemon retries) is success; a refusal is logged
#                     (ERROR) with the daemon's reason when its answer comes.
#   prolong           the same ban with the longer bantime (bantime.increment).
#   unban             removes this jail's claim (already absent = success).
#   flush             at "unban --all": withdraws every route of the jail in
#                     one request. At stop/restart (the jail's actions thread is
#                     no longer active): nothing, unless withdraw_on_stop.
#   start             pings the daemon and logs clearly if it is not running
#                     (the jail starts anyway; requests go to the queue).
#   stop              waits (at most the timeout) for the answers in flight.
#   reload            keeps the action (fail2ban drops Python actions that
#                     lack reload and clearAllParams on "fail2ban-client reload").
#
# Values captured from log lines (<F-USER>, matches) are never sent.

import collections
import json
import os
import socket
import threading
import time

from fail2ban.server.action import ActionBase

DEFAULT_SOCKET = "/run/f2b-bgp/f2b-bgp.sock"
DEFAULT_QUEUE = "/var/lib/f2b-bgp/fail2ban.queue"
DEFAULT_TIMEOUT = 5.0
MAX_RESPONSE = 1024 * 1024
MAX_IN_FLIGHT = 4096  # unanswered requests; beyond it ban() waits (at most the timeout) for answers
DEFAULT_RETRY = 1.0
TRUE_WORDS = ("1", "true", "yes", "on")
QUEUE_MAGIC = "f2b-bgp1"


class DaemonError(Exception):
    """The daemon answered ok=false, or could not be reached (code "unavailable")."""

    def __init__(self, code, message, hint=""):
        super().__init__("%s: %s%s" % (code, message, " (hint: %s)" % hint if hint else ""))
        self.code = code


class Queue(object):
    """Appends request lines to the daemon's queue file: one O_APPEND write per call, never torn apart."""

    def __init__(self, path):
        self.path = path

    def append(self, lines):
        data = "".join(lines).encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as err:
            raise DaemonError("error", "cannot append to the queue %s: %s; nothing was handed to the daemon"
                              % (self.path, err.strerror or err))
        if written != len(data):
            raise DaemonError("error", "short write to the queue %s (disk full?)" % self.path)


def queue_line(request):
    """The queue's line for a ban/unban/flush request (format: f2b_bgp/spool.py)."""
    jail = request["jail"]
    if not jail.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in jail):
        raise DaemonError("error", "jail name %r cannot be queued (empty or control characters)" % jail)
    if request["op"] == "flush":
        return "%s flush - - - - - %s\n" % (QUEUE_MAGIC, jail)
    return "%s %s %s %.6f %d %d %d %s\n" % (
        QUEUE_MAGIC, request["op"], request["prefix"], request.get("started", 0.0), request.get("bantime", 0),
        request.get("failures", 0), request.get("restored", 0), jail)


class Connection(object):
    """One persistent, pipelined JSON-lines connection to the daemon, shared by fail2ban's threads.

    send() writes a request and returns; a reader thread matches the daemon's
    answers to the requests in flight, in order. What cannot be sent, and what
    was in flight on a connection that broke, goes to the queue.
    """

    def __init__(self, path, timeout, retry, queue, log, jail):
        self.path, self.timeout, self.retry, self.queue, self.log, self.jail = path, timeout, retry, queue, log, jail
        self._sock = None
        self._inflight = collections.deque()  # (request, waiter dict or None, sent at), oldest first
        self._lock = threading.Condition()
        self._queued = False  # something went to the queue: keep queueing until the daemon applied it all
        self._appends = 0
        self._next_try = 0.0

    def send(self, request):
        """Hand one idempotent request over: to the daemon if it can take it now, else to the queue."""
        with self._lock:
            for _ in range(2):  # a connection the daemon closed since the last request: once more, afresh
                if not self._reachable():
                    break
                try:
                    self._write(request, None)
                    return
                except (OSError, ValueError) as err:
                    self._broken(err)
                if self._queued:
                    break  # what was in flight went to the queue: this one must follow it there
            self._queue([request])

    def call(self, op, **fields):
        """One request answered before returning (ping, status); raises DaemonError."""
        with self._lock:
            try:
                self._connect()
                response = self._ask(dict(fields, op=op))
            except (OSError, ValueError) as err:
                self._broken(err)
                raise self._unavailable(err)
        if not response.get("ok"):
            raise DaemonError(response.get("code", "error"), response.get("error", "unknown error"),
                              response.get("hint", ""))
        return response

    def wait_answered(self):
        """Wait (at most the timeout) until every request in flight is answered or queued."""
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while self._inflight and self._lock.wait(max(0.0, deadline - time.monotonic())):
                pass
            if self._inflight:
                self._broken(socket.timeout("no answer within %g s" % self.timeout))

    def close(self):
        with self._lock:
            self._close()

    # under the lock ----------------------------------------------------------------------------

    def _reachable(self):
        if not self._queued:
            try:
                self._connect()
                return True
            except OSError as err:
                self._broken(err)
                return False
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry
        mark = self._appends
        try:
            self._connect()
            queue = self._ask({"op": "status"}).get("queue") or {}
        except (OSError, ValueError) as err:
            self._broken(err)
            return False
        if queue.get("depth") == 0 and self._appends == mark:
            self._queued = False
            self.log.info("[%s] f2b-bgp: daemon back, queue applied; sending directly again", self.jail)
            return True
        return False

    def _connect(self):
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        reader = threading.Thread(target=self._read, args=(sock,), name="f2b-bgp-%s" % self.jail)
        reader.daemon = True
        reader.start()

    def _write(self, request, waiter):
        deadline = time.monotonic() + self.timeout
        while len(self._inflight) >= MAX_IN_FLIGHT:
            self._lock.wait(max(0.0, deadline - time.monotonic()))
            if self._sock is None:
                raise OSError("connection lost")
            if len(self._inflight) >= MAX_IN_FLIGHT and time.monotonic() >= deadline:
                raise OSError("%d requests unanswered after %g s" % (len(self._inflight), self.timeout))
        wire = dict((k, v) for k, v in request.items() if k not in ("failures", "restored"))
        self._sock.sendall(json.dumps(wire, separators=(",", ":")).encode("utf-8") + b"\n")
        self._inflight.append((request, waiter, time.monotonic()))  # after the send: a failed one is queued by the caller

    def _ask(self, request):
        """Send and wait for this one answer (the lock is released while waiting)."""
        waiter = {}
        self._write(request, waiter)
        deadline = time.monotonic() + self.timeout
        while not waiter and self._lock.wait(max(0.0, deadline - time.monotonic())):
            pass
        if "response" in waiter:
            return waiter["response"]
        raise OSError(waiter.get("error") or "no answer within %g s" % self.timeout)

    def _queue(self, requests):
        lines = [queue_line(r) for r in requests if r["op"] in ("ban", "unban", "flush")]
        if not lines:
            return
        self.queue.append(lines)
        self._appends += len(lines)
        if not self._queued:
            self.log.warning("[%s] f2b-bgp: daemon not reachable at %s; queueing in %s until it is back",
                             self.jail, self.path, self.queue.path)
            self._queued = True
            self._next_try = time.monotonic() + self.retry

    def _broken(self, err):
        """The connection failed: queue what it had in flight, in order, and wake whoever waits."""
        requests = []
        while self._inflight:
            request, waiter, _ = self._inflight.popleft()
            if waiter is not None:
                waiter["error"] = str(err)
            else:
                requests.append(request)
        self._close()
        self._lock.notify_all()
        try:
            self._queue(requests)
        except DaemonError as qerr:
            self.log.error("[%s] f2b-bgp: %d request(s) neither answered nor queued: %s", self.jail, len(requests), qerr)

    def _close(self):
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    # the reader thread ---------------------------------------------------------------------------

    def _read(self, sock):
        buffer = b""
        try:
            while True:
                while b"\n" not in buffer:
                    if len(buffer) > MAX_RESPONSE:
                        raise ValueError("response longer than %d bytes" % MAX_RESPONSE)
                    try:
                        chunk = sock.recv(65536)
                    except socket.timeout:
                        if self._overdue():
                            raise
                        continue  # idle, or answers still within the timeout
                    if not chunk:
                        raise ValueError("the daemon closed the connection")
                    buffer += chunk
                answer, _, buffer = buffer.partition(b"\n")
                response = json.loads(answer.decode("utf-8"))
                if not isinstance(response, dict):
                    raise ValueError("response is not a JSON object")
                with self._lock:  # answered (and logged) before anyone waiting sees it gone
                    if self._sock is not sock or not self._inflight:
                        return
                    request, waiter, _ = self._inflight.popleft()
                    if waiter is not None:
                        waiter["response"] = response
                    else:
                        self._answered(request, response)
                    self._lock.notify_all()
        except (OSError, ValueError) as err:
            with self._lock:
                if self._sock is sock:  # not closed on purpose
                    if self._inflight:
                        self.log.warning("[%s] f2b-bgp: connection to the daemon lost with %d request(s) "
                                         "unanswered (queued): %s", self.jail, len(self._inflight), err)
                    self._broken(err)

    def _overdue(self):
        with self._lock:
            return bool(self._inflight) and time.monotonic() - self._inflight[0][2] >= self.timeout

    def _answered(self, request, response):
        if not response.get("ok"):
            self.log.error("[%s] f2b-bgp: %s %s refused: %s: %s%s", self.jail, request["op"], request.get("prefix", ""),
                           response.get("code", "error"), response.get("error", "unknown error"),
                           " (hint: %s)" % response["hint"] if response.get("hint") else "")
        elif response.get("state") == "pending":
            self.log.warning("[%s] f2b-bgp: %s stored, backend not acknowledged yet (the daemon retries)",
                             self.jail, response.get("prefix"))

    def _unavailable(self, err):
        return DaemonError("unavailable", "f2b-bgp daemon not reachable at %s: %s" % (self.path, err),
                           "is 'f2b-bgp serve' running, and may fail2ban use its socket?")


class BgpBlackholeAction(ActionBase):

    def __init__(self, jail, name, socket=None, timeout=None, withdraw_on_stop=None, queue=None, retry=None, **kwargs):
        super(BgpBlackholeAction, self).__init__(jail, name)
        self._conn = None
        self._configure(socket, timeout, withdraw_on_stop, queue, retry)

    # configuration -------------------------------------------------------------------------

    def _configure(self, socket_path, timeout, withdraw_on_stop, queue, retry):
        path = socket_path or os.environ.get("F2B_BGP_SOCKET") or DEFAULT_SOCKET
        seconds = float(timeout) if timeout not in (None, "") else DEFAULT_TIMEOUT
        if not seconds > 0:
            raise ValueError("timeout must be a positive number of seconds, not %r" % (timeout,))
        retry_seconds = float(retry) if retry not in (None, "") else DEFAULT_RETRY
        if not 0 <= retry_seconds <= 3600:
            raise ValueError("retry must be 0..3600 seconds, not %r" % (retry,))
        self.withdraw_on_stop = str(withdraw_on_stop or "false").strip().lower() in TRUE_WORDS
        if self._conn is not None:
            self._conn.wait_answered()
            self._conn.close()
        queue = queue or os.environ.get("F2B_BGP_QUEUE") or DEFAULT_QUEUE
        self._conn = Connection(path, seconds, retry_seconds, Queue(queue), self._logSys, self._jail.name)

    def clearAllParams(self):
        """Called by "fail2ban-client reload" before reload(); the options then come anew."""

    def reload(self, socket=None, timeout=None, withdraw_on_stop=None, queue=None, retry=None, **kwargs):
        self._configure(socket, timeout, withdraw_on_stop, queue, retry)

    # life cycle ----------------------------------------------------------------------------

    def start(self):
        try:
            version = self._conn.call("ping").get("version", "?")
        except DaemonError as err:
            self._logSys.error("[%s] f2b-bgp: %s; bans go to the queue %s until it is back",
                               self._jail.name, err, self._conn.queue.path)
            return
        self._logSys.info("[%s] f2b-bgp %s reachable at %s", self._jail.name, version, self._conn.path)

    def stop(self):
        self._conn.wait_answered()
        self._conn.close()

    def flush(self):
        """Return True so fail2ban skips its one-by-one unbans (the daemon owns expiry)."""
        stopping = not getattr(getattr(self._jail, "actions", None), "active", False)
        if stopping and not self.withdraw_on_stop:
            self._logSys.info("[%s] f2b-bgp: jail stops, routes stay until their expiry", self._jail.name)
            return True
        self._conn.send({"op": "flush", "jail": self._jail.name})
        self._conn.wait_answered()
        self._logSys.info("[%s] f2b-bgp: withdrawing every route of the jail", self._jail.name)
        return True

    # events --------------------------------------------------------------------------------

    def ban(self, aInfo):
        self._ban(aInfo)

    def reban(self, aInfo):
        self._ban(aInfo)

    @property
    def _prolongable(self):
        return True

    def prolong(self, aInfo):
        self._ban(aInfo)

    def unban(self, aInfo):
        self._conn.send({"op": "unban", "prefix": str(aInfo["ip"]), "jail": self._jail.name})

    def _ban(self, aInfo):
        failures, restored = int(aInfo["failures"]), int(aInfo["restored"])
        self._conn.send({"op": "ban", "prefix": str(aInfo["ip"]), "jail": self._jail.name,
                         "bantime": int(aInfo["bantime"]), "started": float(aInfo["time"]),
                         "reason": "fail2ban: %d failures, restored=%d" % (failures, restored),
                         "failures": failures, "restored": restored})


Action = BgpBlackholeAction
