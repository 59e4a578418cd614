"""Run inside the server namespace: accept TCP connections on [::]:PORT (dual stack) and close them."""

import socket
import sys

server = socket.create_server(("::", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
while True:
    conn, _ = server.accept()
    conn.close()
