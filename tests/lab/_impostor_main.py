"""Pretend to be ExaBGP's bridge: connect to the daemon's bridge socket, say hello, see what happens.

usage: python3 _impostor_main.py SOCKET   (stdlib only: it runs as another user, see impostor.py)
Prints JSON: {"pid", "uid", "connect_error", "closed"}; closed: the daemon hung up within 5 s.
"""

import json
import os
import socket
import sys
import time

out = {"pid": os.getpid(), "uid": os.getuid(), "connect_error": "", "closed": False}
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
    conn.settimeout(5)
    try:
        conn.connect(sys.argv[1])
    except OSError as err:
        out["connect_error"] = err.strerror or str(err)
    else:
        hello = {"bridge": {"pid": os.getpid(), "exabgp_pid": os.getpid(), "started": time.time(), "version": "x"}}
        try:
            conn.sendall(json.dumps(hello).encode() + b"\n")
            out["closed"] = conn.recv(1) == b""
        except ConnectionError:  # reset or broken pipe: hung up on before or after the hello
            out["closed"] = True
        except TimeoutError:
            out["closed"] = False
print(json.dumps(out))
