"""Who is on the other end of a connection: the local user, or the remote address.

Used to count wrong tokens per client (``page.Throttle``): one local user guessing tokens
must not lock the others out. For a connection over the loopback the kernel knows which
user owns the client's socket (``/proc/net/tcp``, ``tcp6``: the ``uid`` of the line whose
local address is the client's address and port); processes of one user are one client
(they can read that user's settings, token included). A loopback client the table does not
name (closed before its answer, another network namespace, no ``/proc``) counts with every
other such client; a client from another machine is its address, IPv6 addresses by their
/64, which one machine usually has whole.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping

PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = "01"
# A client that half-closes after sending (shutdown(SHUT_WR)) is in FIN_WAIT1/2 or CLOSING by
# the time its request is read. Such a line names its user only while the socket is still
# open: one closed before the answer (an orphan) is shown as uid 0, which must not be taken
# for root (measured: nobody's socket after shutdown: FIN_WAIT2 uid 65534; after close: uid 0).
HALF_CLOSED = ("04", "05", "0B")
UNKNOWN_LOCAL = "loopback, user unknown"


def _hex_words(packed: bytes) -> str:
    """An address as the kernel prints it: each 32-bit word in this CPU's byte order, in hex."""
    return "".join(f"{struct.unpack('=I', packed[i : i + 4])[0]:08X}" for i in range(0, len(packed), 4))


def _needles(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> dict[str, str]:
    """The client's local address as each table writes it (a v4 client shows in tcp6 as ::ffff:a.b.c.d)."""
    suffix = f":{port:04X}"
    if isinstance(address, ipaddress.IPv4Address):
        mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
        return {
            "tcp": _hex_words(address.packed) + suffix,
            "tcp6": _hex_words(mapped.packed) + suffix,
        }
    return {"tcp6": _hex_words(address.packed) + suffix}


def _plain(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def socket_owner(
    client: str, client_port: int, server_port: int | None, tables: tuple[str, ...] = PROC_TABLES
) -> int | None:
    """The uid that owns the client end of a loopback connection, or None when the table does
    not say (gone, closed already, another network namespace). 2.6 ms with 500 connections
    open when every line was parsed; the client's own address is looked for as text instead."""
    wanted = _plain(client)
    if wanted is None or not 0 < client_port < 65536:
        return None
    needles = _needles(wanted, client_port)
    owners: set[int] = set()
    for table in tables:
        needle = needles.get("tcp6" if table.endswith("6") else "tcp")
        if needle is None:
            continue
        try:
            with open(table) as fh:
                for line in fh:
                    if needle not in line:
                        continue
                    fields = line.split()
                    if len(fields) < 8 or fields[1] != needle:
                        continue
                    if server_port is not None and not fields[2].endswith(f":{server_port:04X}"):
                        continue
                    state, uid = fields[3], int(fields[7])
                    if state == ESTABLISHED or (state in HALF_CLOSED and uid != 0):
                        owners.add(uid)
        except (OSError, ValueError):
            continue
    # Two sockets may share a local address and port when their destinations differ (one to
    # 127.0.0.1:8080, one to 127.0.0.2:8080 of a daemon bound to 0.0.0.0): then the table
    # cannot say which is this connection, and neither user's count is taken.
    return owners.pop() if len(owners) == 1 else None


def client_key(environ: Mapping[str, object]) -> str:
    """``uid N`` for a local user's connection; ``loopback, user unknown`` for one the table does
    not name (every such client shares that one count: a client cannot escape its own by
    closing early or by picking another 127.x.y.z source); else ``address A`` (IPv6: its /64)."""
    remote = str(environ.get("REMOTE_ADDR", ""))
    address = _plain(remote)
    if address is None:
        return f"address {remote}"
    try:
        port = int(str(environ.get("REMOTE_PORT", "")))
    except ValueError:
        port = -1
    server = str(environ.get("SERVER_PORT", ""))
    # Any address, not only the loopback: a local user may come through this machine's own
    # network address (a daemon bound to 0.0.0.0); a remote client has no line here.
    uid = socket_owner(remote, port, int(server) if server.isdigit() and server != "0" else None)
    if uid is not None:
        return f"uid {uid}"
    if address.is_loopback:
        return UNKNOWN_LOCAL
    if isinstance(address, ipaddress.IPv6Address):
        return f"address {ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"address {address}"
