#!/usr/bin/env python3
# Writes malformed.txt, and first re-encodes the pre_vote vector from the spec
# alone (independent CRC32C) to cross-check messages.txt. Run from anywhere.
import os, struct
HERE = os.path.dirname(os.path.abspath(__file__))
def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xffffffff
def frame(typ, body, group=7, req=0, magic=b"RRPC", ver=1, flags=0, blen=None, crc=None):
    h = magic + struct.pack("<BBHQQI", ver, typ, flags, group, req, len(body) if blen is None else blen)
    c = crc32c(h + body) if crc is None else crc
    return h + struct.pack("<I", c) + body
def hx(b): return " ".join("%02x" % x for x in b)
# check against vector file CRC for pre_vote
pv_body = struct.pack("<QQQQQ", 2, 1, 5, 4, 100)
pv = frame(0x10, pv_body)
txt = open(HERE + "/messages.txt").read()
sec = txt.split("[pre_vote]")[1].split("[")[0]
hexs = " ".join(l.split("#")[0] for l in sec.splitlines()[1:]).split()
assert bytes(int(x,16) for x in hexs) == pv, "independent encoding differs"
print("independent python encoding of pre_vote matches the vector (CRC32C included)")
cases = []
cases.append(("truncated_header", "the first 20 bytes of a header", pv[:20]))
cases.append(("truncated_body", "pre_vote missing its last 4 body bytes", pv[:-4]))
cases.append(("truncated_field", "a complete frame whose pre_vote body stops after the 24-byte common prefix", frame(0x10, pv_body[:24])))
cases.append(("oversized", "header declaring a 2000-byte body; the test's limit is 1024; no body follows", frame(0x14, b"", blen=2000)[:32]))
cases.append(("unknown_type", "type 0x7f, empty body, valid CRC", frame(0x7f, b"")))
bad = bytearray(pv); bad[40] ^= 0x01
cases.append(("bad_crc", "pre_vote with one body bit flipped", bytes(bad)))
cases.append(("bad_magic", "magic XRPC", frame(0x10, pv_body, magic=b"XRPC")))
cases.append(("version_unsupported", "header version 2", frame(0x10, pv_body, ver=2)))
cases.append(("bad_flags", "reserved flag bit 0 set", frame(0x10, pv_body, flags=1)))
cases.append(("malformed_trailing", "pre_vote_response with one byte too many (CRC valid)", frame(0x11, struct.pack("<QQQBB", 1, 2, 4, 1, 0))))
cases.append(("malformed_bool", "pre_vote_response granted = 2 (CRC valid)", frame(0x11, struct.pack("<QQQB", 1, 2, 4, 2))))
cases.append(("malformed_count", "heartbeat_batch claiming 0xffffffff items in 0 bytes", frame(0x18, struct.pack("<QQI", 1, 2, 0xffffffff), group=0)))
cases.append(("malformed_reject_hint", "append_entries_response accepted but with a non-zero hint", frame(0x15, struct.pack("<QQQQBQQQ", 2, 1, 5, 13, 0, 1, 0, 0))))
out = ["# Malformed frames (see PROTOCOL.md §Test vectors). Each name starts with the",
       "# error kind a decoder must report (truncated, oversized, unknown_type, bad_crc,",
       "# bad_magic, version_unsupported, bad_flags, malformed). Decode with max body 1024.", ""]
for n, why, b in cases:
    out.append("[%s]  # %s" % (n, why))
    for i in range(0, len(b), 32): out.append(hx(b[i:i+32]))
    out.append("")
open(HERE + "/malformed.txt", "w").write("\n".join(out))
