"""Reads our TensorBoard event files with the `tensorboard` package (2.21.0), for
tests/trainers/metrics/test_tensorboard.cpp and tests/trainers/test_trainer.cpp.

usage:
  tensorboard_read.py DIR OUT.json

Checks every TFRecord frame of every event file in DIR with tensorboard's own masked CRC-32C
(length and payload), then loads DIR with tensorboard's EventAccumulator (what `tensorboard
--logdir` uses) and writes {"files": n, "file_version": "...", "scalars": {tag: [[step, value],
...]}} to OUT.json. Exits non-zero on a bad frame.
"""
import glob
import json
import os
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c


def check_frames(path):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc32c(header) != len_crc:
            sys.exit(f"{path}: bad length CRC at byte {pos}")
        payload = data[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if len(payload) != length or masked_crc32c(payload) != data_crc:
            sys.exit(f"{path}: bad payload CRC at byte {pos}")
        pos += 16 + length


def main():
    directory, out = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*")))
    for f in files:
        check_frames(f)
    acc = EventAccumulator(directory, size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    version = acc.file_version if hasattr(acc, "file_version") else None
    with open(out, "w") as f:
        json.dump({"files": len(files), "file_version": version, "scalars": scalars}, f)


if __name__ == "__main__":
    main()
