"""Reference for the Go tensorboard package tests (tensorboard/).

  tensorboard_check.py DIR

reads the event files in DIR with TensorBoard and prints JSON:
  {"files": number of event files,
   "events": every event of every file, read record by record with
             TensorBoard's CRC-checking TFRecord reader:
             {"wall_time", "step", "file_version", "values": [[tag, value]]},
   "file_version": EventAccumulator's file_version,
   "scalars": {tag: [[step, value, wall_time]]} from EventAccumulator}
"""

import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New


def raw_events(path):
    reader = PyRecordReader_New(path)
    while True:
        try:
            reader.GetNext()  # raises DataLossError on a bad CRC
        except errors.OutOfRangeError:
            return
        ev = event_pb2.Event.FromString(reader.record())
        yield {
            "wall_time": ev.wall_time,
            "step": ev.step,
            "file_version": ev.file_version,
            "values": [[v.tag, v.simple_value] for v in ev.summary.value],
        }


def main():
    d = sys.argv[1]
    files = sorted(f for f in os.listdir(d) if "tfevents" in f)
    events = [e for f in files for e in raw_events(os.path.join(d, f))]
    acc = EventAccumulator(d, size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {
        tag: [[s.step, s.value, s.wall_time] for s in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }
    json.dump(
        {"files": len(files), "events": events, "file_version": acc.file_version, "scalars": scalars},
        sys.stdout,
        sort_keys=True,
    )


if __name__ == "__main__":
    main()
