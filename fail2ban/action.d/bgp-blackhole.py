# Fail2Ban Python action: blackhole banned addresses with BGP through the f2b-bgp daemon.
#
# The fast path of fail2ban/action.d/bgp-blackhole.conf: the same ban, unban,
# prolong and flush requests, sent in-process over one persistent connection
# to the daemon's JSON-lines socket (docs/contracts.md), without a process per
# ban and without a shell. Standard library only: fail2ban-server runs under
# the system python3, where f2b-bgp itself need not be installed.
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
#   timeout           seconds to wait for the daemon per request (connect,
#                     send, answer). fail2ban gives Python actions no timeout
#                     of its own.  Default: 5
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
#                     yet, the daemon retries) is success.
#   prolong           the same ban with the longer bantime (bantime.increment).
#   unban             removes this jail's claim (already absent = success).
#   flush             at "unban --all": withdraws every route of the jail in
#                     one request. At stop/restart (the jail's actions thread is
#                     no longer active): nothing, unless withdraw_on_stop.
#   start             pings the daemon and logs clearly if it is not running
#                     (the jail starts anyway; every request reconnects).
#   reload            keeps the action (fail2ban drops Python actions that
#                     lack reload and clearAllParams on "fail2ban-client reload").
#
# Values captured from log lines (<F-USER>, matches) are never sent.

import json
import os
import socket
import threading

from fail2ban.server.action import ActionBase

DEFAULT_SOCKET = "/run/f2b-bgp/f2b-bgp.sock"
DEFAULT_TIMEOUT = 5.0
MAX_RESPONSE = 1024 * 1024
TRUE_WORDS = ("1", "true", "yes", "on")


class DaemonError(Exception):
    """The daemon answered ok=false, or could not be reached (code "unavailable")."""

    def __init__(self, code, message, hint=""):
        super().__init__("%s: %s%s" % (code, message, " (hint: %s)" % hint if hint else ""))
        self.code = code


class Connection(object):
    """One persistent JSON-lines connection to the daemon, shared by fail2ban's threads.

    A request on a reused connection that fails (the daemon restarted) is sent
    once more on a fresh one; every request here is idempotent.
    """

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self._sock = None
        self._buffer = b""
        self._lock = threading.Lock()

    def call(self, op, **fields):
        request = dict(fields, op=op)
        line = json.dumps(request, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._lock:
            reused = self._sock is not None
            try:
                response = self._exchange(line)
            except (OSError, ValueError) as err:
                self.close()
                if not reused:
                    raise self._unavailable(err)
                try:
                    response = self._exchange(line)
                except (OSError, ValueError) as err2:
                    self.close()
                    raise self._unavailable(err2)
        if not response.get("ok"):
            raise DaemonError(response.get("code", "error"), response.get("error", "unknown error"),
                              response.get("hint", ""))
        return response

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buffer = b""

    def _exchange(self, line):
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        self._sock.sendall(line)
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_RESPONSE:
                raise ValueError("response longer than %d bytes" % MAX_RESPONSE)
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ValueError("the daemon closed the connection")
            self._buffer += chunk
        answer, _, self._buffer = self._buffer.partition(b"\n")
        response = json.loads(answer.decode("utf-8"))
        if not isinstance(response, dict):
            raise ValueError("response is not a JSON object")
        return response

    def _unavailable(self, err):
        return DaemonError("unavailable", "f2b-bgp daemon not reachable at %s: %s" % (self.path, err),
                           "is 'f2b-bgp serve' running, and may fail2ban use its socket?")


class BgpBlackholeAction(ActionBase):

    def __init__(self, jail, name, socket=None, timeout=None, withdraw_on_stop=None, **kwargs):
        super(BgpBlackholeAction, self).__init__(jail, name)
        self._conn = None
        self._configure(socket, timeout, withdraw_on_stop)

    # configuration -------------------------------------------------------------------------

    def _configure(self, socket_path, timeout, withdraw_on_stop):
        path = socket_path or os.environ.get("F2B_BGP_SOCKET") or DEFAULT_SOCKET
        seconds = float(timeout) if timeout not in (None, "") else DEFAULT_TIMEOUT
        if not seconds > 0:
            raise ValueError("timeout must be a positive number of seconds, not %r" % (timeout,))
        self.withdraw_on_stop = str(withdraw_on_stop or "false").strip().lower() in TRUE_WORDS
        if self._conn is not None:
            self._conn.close()
        self._conn = Connection(path, seconds)

    def clearAllParams(self):
        """Called by "fail2ban-client reload" before reload(); the options then come anew."""

    def reload(self, socket=None, timeout=None, withdraw_on_stop=None, **kwargs):
        self._configure(socket, timeout, withdraw_on_stop)

    # life cycle ----------------------------------------------------------------------------

    def start(self):
        try:
            version = self._conn.call("ping").get("version", "?")
        except DaemonError as err:
            self._logSys.error("[%s] f2b-bgp: %s; bans will be retried on each event",
                               self._jail.name, err)
            return
        self._logSys.info("[%s] f2b-bgp %s reachable at %s", self._jail.name, version, self._conn.path)

    def stop(self):
        self._conn.close()

    def flush(self):
        """Return True so fail2ban skips its one-by-one unbans (the daemon owns expiry)."""
        stopping = not getattr(getattr(self._jail, "actions", None), "active", False)
        if stopping and not self.withdraw_on_stop:
            self._logSys.info("[%s] f2b-bgp: jail stops, routes stay until their expiry", self._jail.name)
            return True
        removed = self._conn.call("flush", jail=self._jail.name).get("removed")
        self._logSys.info("[%s] f2b-bgp: withdrew %s ban(s) of the jail", self._jail.name, removed)
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
        self._conn.call("unban", prefix=str(aInfo["ip"]), jail=self._jail.name)

    def _ban(self, aInfo):
        reason = "fail2ban: %s failures, restored=%s" % (int(aInfo["failures"]), int(aInfo["restored"]))
        response = self._conn.call("ban", prefix=str(aInfo["ip"]), jail=self._jail.name,
                                   bantime=int(aInfo["bantime"]), started=float(aInfo["time"]), reason=reason)
        if response.get("state") == "pending":
            self._logSys.warning("[%s] f2b-bgp: %s stored, backend not acknowledged yet (the daemon retries)",
                                 self._jail.name, response.get("prefix"))


Action = BgpBlackholeAction
