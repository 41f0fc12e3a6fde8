#!/usr/bin/env python3
"""Writes the seed corpus for both fuzz targets from proto-spec/vectors/*.txt.

frame_decoder seeds: a chunk-size byte, then a vector's whole frame.
body_decoder seeds: the vector's type byte, then its body.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "proto-spec", "vectors")


def parse(path):
    out, name = {}, None
    for line in open(path):
        line = line.split("#")[0].strip()
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1]
            out[name] = ""
        elif line:
            out[name] += "".join(line.split())
    return {n: bytes.fromhex(h) for n, h in out.items()}


for target in ("frame_decoder", "body_decoder"):
    os.makedirs(os.path.join(HERE, "corpus", target), exist_ok=True)
for fname in ("messages.txt", "malformed.txt"):
    for name, frame in parse(os.path.join(VECTORS, fname)).items():
        with open(os.path.join(HERE, "corpus", "frame_decoder", "seed-" + name), "wb") as f:
            f.write(bytes([7]) + frame)
        if fname == "messages.txt":
            with open(os.path.join(HERE, "corpus", "body_decoder", "seed-" + name), "wb") as f:
                f.write(frame[5:6] + frame[32:])
