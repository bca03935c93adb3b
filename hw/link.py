"""The host side of the board's serial protocol (the board's side is ``hw/rtl/onebit_board.v``).

Every message is ``sync type seq len16 payload crc16`` (little-endian; CRC-16/CCITT-FALSE over every byte after
the sync byte). Requests start with 0xA5: INFER (one frame's input beats), LOOPBACK (bytes echoed back), INFO
(the board's design and link parameters). Replies start with 0x5A: type | 0x80 with the same sequence number,
or NAK (0xEE) with a reason byte. :class:`Link` runs frames through a board with at most ``window`` unanswered
(the board's ring holds that many), retries a frame whose reply is a NAK, corrupt or late, and reports a frame
that fails every retry instead of dropping it.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from onebit.errors import ToolError

SYNC_REQUEST, SYNC_REPLY = 0xA5, 0x5A
INFER, LOOPBACK, INFO = 0x01, 0x02, 0x03
REPLY, NAK = 0x80, 0xEE
PROTOCOL_VERSION = 1
NAK_REASONS = {1: "bad CRC", 2: "bad length", 3: "unknown type", 4: "board busy (window exceeded)",
               5: "request cut short (timeout)"}
#: INFO payload: version, window, input beat bytes, input beats, output beat bytes, output beats, design id,
#: accelerator clock (Hz), link clock (Hz), bit time (1/256 link clocks), loop-back buffer bytes
INFO_FORMAT = "<BBHIHIIIIIH"
INFO_FIELDS = ("version", "window", "in_beat_bytes", "in_beats", "out_beat_bytes", "out_beats", "design_id",
               "acc_clock_hz", "link_clock_hz", "bit_q8", "loop_bytes")


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final xor)."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def message(sync: int, kind: int, seq: int, payload: bytes = b"") -> bytes:
    body = bytes([kind, seq & 0xFF]) + struct.pack("<H", len(payload)) + payload
    return bytes([sync]) + body + struct.pack("<H", crc16(body))


def request(kind: int, seq: int, payload: bytes = b"") -> bytes:
    return message(SYNC_REQUEST, kind, seq, payload)


def info_payload(**fields) -> bytes:
    return struct.pack(INFO_FORMAT, *(int(fields[k]) for k in INFO_FIELDS))


def parse_info(payload: bytes) -> dict:
    if len(payload) != struct.calcsize(INFO_FORMAT):
        raise ToolError(f"board INFO reply: expected {struct.calcsize(INFO_FORMAT)} bytes, got {len(payload)}")
    return dict(zip(INFO_FIELDS, struct.unpack(INFO_FORMAT, payload)))


@dataclass
class Reply:
    kind: int
    seq: int
    payload: bytes


class ReplyReader:
    """Finds replies in the byte stream: skips bytes until a sync byte, checks the length and CRC, and counts
    what it threw away (``corrupt`` replies, ``skipped`` bytes)."""

    def __init__(self, max_payload: int):
        self.buf = bytearray()
        self.max_payload = max_payload
        self.corrupt = 0
        self.skipped = 0

    def feed(self, data: bytes) -> list[Reply]:
        self.buf += data
        out = []
        while True:
            start = self.buf.find(bytes([SYNC_REPLY]))
            if start < 0:
                self.skipped += len(self.buf)
                self.buf.clear()
                return out
            if start:
                self.skipped += start
                del self.buf[:start]
            if len(self.buf) < 5:
                return out
            n = struct.unpack_from("<H", self.buf, 3)[0]
            if n > self.max_payload:  # a corrupt length: drop the sync byte, look for the next
                self.corrupt += 1
                del self.buf[:1]
                continue
            if len(self.buf) < 7 + n:
                return out
            body = bytes(self.buf[1:5 + n])
            (crc,) = struct.unpack_from("<H", self.buf, 5 + n)
            if crc != crc16(body):
                self.corrupt += 1
                del self.buf[:1]
                continue
            del self.buf[:7 + n]
            out.append(Reply(body[0], body[1], body[4:]))


@dataclass
class FrameResult:
    payload: bytes       # the output beats' bytes
    cycles: int          # accelerator cycles from the first input beat to the last output beat
    tries: int


@dataclass
class LinkStats:
    frames: int = 0
    retries: int = 0
    naks: dict = field(default_factory=dict)
    corrupt_replies: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


class Link:
    """A board behind a serial port (any object with ``write``, ``read(n)``, ``in_waiting`` and a ``timeout``,
    e.g. ``serial.Serial``)."""

    def __init__(self, port, *, reply_timeout: float = 2.0, retries: int = 3, max_payload: int = 1 << 16):
        self.port = port
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.reader = ReplyReader(max_payload)
        self.seq = 0
        self.stats = LinkStats()
        self.backlog: list[Reply] = []

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def _send(self, data: bytes) -> None:
        self.port.write(data)
        self.stats.bytes_sent += len(data)

    def _poll(self, wait: float) -> list[Reply]:
        """Replies that arrive within ``wait`` seconds (at least those already buffered)."""
        deadline = time.monotonic() + wait
        replies = self.backlog
        self.backlog = []
        while not replies:
            n = max(1, getattr(self.port, "in_waiting", 0) or 0)
            data = self.port.read(n)
            if data:
                self.stats.bytes_received += len(data)
                replies = self.reader.feed(data)
            if time.monotonic() >= deadline:
                break
        return replies

    def control(self, kind: int, payload: bytes = b"") -> bytes:
        """One LOOPBACK or INFO exchange (retried like a frame); returns the reply's payload."""
        for _ in range(self.retries + 1):
            seq = self._next_seq()
            self._send(request(kind, seq, payload))
            deadline = time.monotonic() + self.reply_timeout
            while time.monotonic() < deadline:
                for r in self._poll(deadline - time.monotonic()):
                    if r.seq != seq:
                        continue
                    if r.kind == kind | REPLY:
                        return r.payload
                    if r.kind == NAK:
                        self._count_nak(r)
                        deadline = 0
                        break
        raise ToolError(f"the board gave no valid reply to a {'LOOPBACK' if kind == LOOPBACK else 'INFO'} request "
                        f"in {self.retries + 1} tries of {self.reply_timeout:g} s each (is it the right port, "
                        f"and is a onebit board design loaded?)")

    def info(self) -> dict:
        return parse_info(self.control(INFO))

    def loopback(self, payload: bytes) -> bytes:
        return self.control(LOOPBACK, payload)

    def _count_nak(self, r: Reply) -> None:
        reason = NAK_REASONS.get(r.payload[0] if r.payload else 0, "unknown")
        self.stats.naks[reason] = self.stats.naks.get(reason, 0) + 1

    def run(self, frames: list[bytes], window: int, reply_bytes: int,
            progress=lambda done: None) -> list[FrameResult]:
        """Every frame's reply, in frame order; at most ``window`` frames unanswered. A frame is sent again
        after a NAK or when its reply is late; ToolError when one fails ``retries + 1`` times."""
        t0 = time.monotonic()
        results: list[FrameResult | None] = [None] * len(frames)
        tries = [0] * len(frames)
        todo = list(range(len(frames)))[::-1]  # a stack: retried frames go first
        pending: dict[int, tuple[int, float]] = {}  # seq -> (frame, deadline)
        done = 0
        while done < len(frames):
            while todo and len(pending) < window:
                k = todo.pop()
                if tries[k] > self.retries:
                    raise ToolError(f"frame {k}: no valid reply after {tries[k]} tries ({self._problems()})")
                tries[k] += 1
                if tries[k] > 1:
                    self.stats.retries += 1
                seq = self._next_seq()
                while seq in pending:
                    seq = self._next_seq()
                self._send(request(INFER, seq, frames[k]))
                pending[seq] = (k, time.monotonic() + self.reply_timeout * window)
            soonest = min(d for _, d in pending.values())
            for r in self._poll(max(0.0, soonest - time.monotonic())):
                if r.seq not in pending:
                    continue  # a late reply to a frame already sent again
                k, _ = pending.pop(r.seq)
                if r.kind == INFER | REPLY and len(r.payload) == reply_bytes + 4:
                    cycles = struct.unpack_from("<I", r.payload, reply_bytes)[0]
                    results[k] = FrameResult(r.payload[:reply_bytes], cycles, tries[k])
                    done += 1
                    progress(done)
                else:
                    if r.kind == NAK:
                        self._count_nak(r)
                    todo.append(k)
            now = time.monotonic()
            for seq, (k, deadline) in list(pending.items()):
                if now >= deadline:
                    del pending[seq]
                    self.stats.timeouts += 1
                    todo.append(k)
        self.stats.frames += len(frames)
        self.stats.corrupt_replies = self.reader.corrupt
        self.stats.seconds += time.monotonic() - t0
        return results  # type: ignore[return-value]

    def _problems(self) -> str:
        s = self.stats
        naks = ", ".join(f"{n} NAK {why}" for why, n in s.naks.items())
        return ", ".join(x for x in (naks, f"{self.reader.corrupt} corrupt replies", f"{s.timeouts} timeouts") if x)
