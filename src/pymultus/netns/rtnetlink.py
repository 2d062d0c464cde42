"""A NETLINK_ROUTE socket: raw rtnetlink requests built with ``struct``.

pyroute2 takes ~210 ms to import, longer than the whole ADD budget, for the handful of message
types used here: link lookups by name (also in another namespace, by its namespace ID), the
namespace ID of a namespace file, and default-route edits (:mod:`pymultus.netns.routes`).

A netlink socket belongs to the network namespace it was created in: one made in the caller's
thread talks to the caller's namespace, one made in a thread that joined a pod's namespace
(:mod:`pymultus.netns.enter`) to the pod's.
"""

from __future__ import annotations

import _struct as struct  # the built-in behind ``struct``: no stdlib file to find and load
import errno as _errno
import posix

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/net_namespace.h
_NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
_RTM_GETLINK = 18
_RTM_NEWNSID = 88
_RTM_GETNSID = 90
_IFLA_IFNAME = 3
_IFLA_TARGET_NETNSID = 46  # Linux >= 4.20 for RTM_GETLINK
_NETNSA_NSID = 1
_NETNSA_FD = 3
_NSID_NOT_ASSIGNED = -1
_AF_UNSPEC = 0


class Rtnetlink:
    """A NETLINK_ROUTE socket in the current thread's network namespace (a context manager)."""

    def __init__(self) -> None:
        import _socket

        kind = _socket.SOCK_RAW | _socket.SOCK_CLOEXEC
        self._sock = _socket.socket(_socket.AF_NETLINK, kind, _NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    # -- messages -----------------------------------------------------------------------------

    def send(self, msg_type: int, flags: int, body: bytes) -> int:
        """Send one request; returns its sequence number, for :meth:`replies`."""
        self._seq += 1
        header = struct.pack("=IHHII", 16 + len(body), msg_type, flags, self._seq, 0)
        self._sock.sendall(header + body)
        return self._seq

    def replies(self, seq: int) -> list[tuple[int, bytes]]:
        """Messages answering ``seq`` until DONE (dump) or the ACK/error; raises OSError on error."""
        out: list[tuple[int, bytes]] = []
        unpack_from = struct.unpack_from
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, flags, msg_seq, _pid = unpack_from("=IHHII", data, offset)
                if length < 16:
                    raise OSError(_errno.EBADMSG, "malformed netlink message")
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if msg_type == NLMSG_DONE:
                    return out
                if msg_type == NLMSG_ERROR:
                    (error,) = unpack_from("=i", payload, 0)
                    if error:
                        raise OSError(-error, posix.strerror(-error))
                    return out
                out.append((msg_type, payload))
                if not flags & NLM_F_MULTI:
                    return out

    def request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        return self.replies(self.send(msg_type, flags, body))

    # -- links and namespace IDs ------------------------------------------------------------------

    def link_exists(self, ifname: str, *, nsid: int | None = None) -> bool:
        """Whether the link ``ifname`` exists in this socket's namespace, or in the one this
        namespace knows as ``nsid`` (:meth:`peer_nsid`)."""
        body = struct.pack("=BxHiII", _AF_UNSPEC, 0, 0, 0, 0)  # struct ifinfomsg
        if nsid is not None:
            body += attr(_IFLA_TARGET_NETNSID, struct.pack("=i", nsid))
        body += attr(_IFLA_IFNAME, ifname.encode("utf-8", "surrogateescape") + b"\0")
        try:
            self.request(_RTM_GETLINK, NLM_F_REQUEST, body)
        except OSError as exc:
            if exc.errno == _errno.ENODEV:
                return False
            raise
        return True

    def peer_nsid(self, fd: int) -> int:
        """This namespace's ID for the network namespace open at ``fd``, assigning one if it has
        none yet. Assigning is what the kernel itself does as soon as a link has its other end
        there (a veth pair's, a macvlan's): the delegates' first interface would do it anyway.
        The ID is bookkeeping of this namespace and is gone with the peer namespace."""
        nsid = self._get_nsid(fd)
        if nsid != _NSID_NOT_ASSIGNED:
            return nsid
        body = struct.pack("=Bxxx", _AF_UNSPEC) + attr(_NETNSA_NSID, struct.pack("=i", -1))
        body += attr(_NETNSA_FD, struct.pack("=I", fd))
        try:
            self.request(_RTM_NEWNSID, NLM_F_REQUEST | NLM_F_ACK, body)
        except OSError as exc:
            if exc.errno != _errno.EEXIST:  # another caller assigned one meanwhile: fine
                raise
        nsid = self._get_nsid(fd)
        if nsid == _NSID_NOT_ASSIGNED:
            raise OSError(_errno.ENOENT, "no namespace ID was assigned")
        return nsid

    def _get_nsid(self, fd: int) -> int:
        body = struct.pack("=Bxxx", _AF_UNSPEC) + attr(_NETNSA_FD, struct.pack("=I", fd))
        for _msg_type, payload in self.request(_RTM_GETNSID, NLM_F_REQUEST, body):
            for attr_type, value in attrs(payload, 4):
                if attr_type == _NETNSA_NSID and len(value) >= 4:
                    return int(struct.unpack_from("=i", value, 0)[0])
        return _NSID_NOT_ASSIGNED


def attr(attr_type: int, value: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(value)
    return struct.pack("=HH", length, attr_type) + value + b"\0" * (((length + 3) & ~3) - length)


def attrs(payload: bytes, offset: int) -> list[tuple[int, bytes]]:
    """The (type, value) attributes of a message body from ``offset`` (flag bits stripped)."""
    out: list[tuple[int, bytes]] = []
    while offset + 4 <= len(payload):
        attr_len, attr_type = struct.unpack_from("=HH", payload, offset)
        if attr_len < 4:
            break
        out.append((attr_type & 0x3FFF, payload[offset + 4 : offset + attr_len]))  # no NLA_F_* bits
        offset += (attr_len + 3) & ~3
    return out
