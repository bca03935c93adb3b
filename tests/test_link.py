"""The host's side of the serial protocol on its own: CRC, message layout, finding replies in a damaged stream."""

from __future__ import annotations

import struct

from onebit.hw import link


def test_crc16_is_ccitt_false():
    assert link.crc16(b"123456789") == 0x29B1  # the catalogue's check value of CRC-16/CCITT-FALSE
    assert link.crc16(b"") == 0xFFFF


def test_request_layout():
    m = link.request(link.INFER, 7, b"\x01\x02\x03")
    assert m[0] == link.SYNC_REQUEST and m[1] == link.INFER and m[2] == 7
    assert struct.unpack_from("<H", m, 3)[0] == 3 and m[5:8] == b"\x01\x02\x03"
    assert struct.unpack_from("<H", m, 8)[0] == link.crc16(m[1:8])


def reply(kind, seq, payload=b""):
    return link.message(link.SYNC_REPLY, kind, seq, payload)


def test_reader_skips_garbage_and_corrupt_replies_and_splits_anywhere():
    good = [reply(link.INFER | link.REPLY, s, bytes([s]) * 5) for s in range(4)]
    bad = bytearray(reply(link.INFER | link.REPLY, 9, b"abcde"))
    bad[6] ^= 0x40  # a payload bit flipped on the line
    stream = b"\x00\x5a\xff" + good[0] + bytes(bad) + good[1] + b"\x5a\x5a" + good[2] + good[3]
    for chunk in (1, 2, 3, 7, len(stream)):
        r = link.ReplyReader(max_payload=64)
        got = []
        for i in range(0, len(stream), chunk):
            got += r.feed(stream[i:i + chunk])
        assert [(g.seq, g.payload) for g in got] == [(s, bytes([s]) * 5) for s in range(4)]
        assert r.corrupt >= 1


def test_reader_drops_a_corrupt_length_without_waiting_for_it():
    r = link.ReplyReader(max_payload=16)
    head = bytes([link.SYNC_REPLY, 0x81, 1]) + struct.pack("<H", 60000)  # a length no reply has
    got = r.feed(head + reply(0x83, 2, b"x"))
    assert [(g.kind, g.seq) for g in got] == [(0x83, 2)]


def test_info_round_trip():
    fields = {k: i + 1 for i, k in enumerate(link.INFO_FIELDS)}
    assert link.parse_info(link.info_payload(**fields)) == fields
