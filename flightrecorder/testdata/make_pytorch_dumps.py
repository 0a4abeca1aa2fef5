#!/usr/bin/env python3
"""Writes flight-recorder dumps shaped exactly as PyTorch 2.x writes them, for
gccl's loader tests. Run from this directory:

    python3 make_pytorch_dumps.py

It writes pytorch/nccl_trace_rank_0 and pytorch/nccl_trace_rank_1 (pickle
protocol 2, as PyTorch's pickler writes, version "2.10", every key and value
type of FlightRecorder::dump: process_group a tuple, thread_id a string,
duration_ms a float only when known, None for an unreached discovery time,
int pg_status values, nccl_comm_state), and pytorch_old/nccl_trace_rank_0, an
older dump (version "2.3", no comm_lib_version, thread_name, thread_id) written
with Python's default protocol, so the loader also meets the opcodes of
protocols 4 and 5 (FRAME, SHORT_BINUNICODE, MEMOIZE).

The job: two ranks, which deadlock by calling collectives in different
orders. Both completed all_reduce #1 on the default group "0"; then rank 0
started broadcast #2 on group "0" while rank 1 started all_gather #1 on group
"1" (ranks [0, 1]). So rank 1 never joined broadcast #2, and rank 0 never
joined all_gather #1 on group "1".
"""

import os
import pickle

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1_700_000_000_000_000_000  # ns


def frame(name, filename, line):
    return {"name": name, "filename": filename, "line": line}


def entry(record_id, pg, seq, name, state, sizes, dtype="Float", p2p_seq=0, duration=None, frames=()):
    started = T0 + record_id * 1_000_000 + 10_000 if state in ("started", "completed") else None
    completed = started + 500_000 if state == "completed" else None
    e = {
        "frames": list(frames),
        "record_id": record_id,
        "pg_id": 0 if pg[0] == "0" else 1,
        "process_group": pg,  # a tuple (name, desc), as PyTorch pickles std::tuple
        "thread_name": "pt_main_thread",
        "thread_id": "140245123456768",
        "collective_seq_id": seq,
        "p2p_seq_id": p2p_seq,
        "op_id": seq,
        "profiling_name": name,
        "time_created_ns": T0 + record_id * 1_000_000,
    }
    if duration is not None:
        e["duration_ms"] = float(duration)
    e.update({
        "input_sizes": [list(sizes)],
        "input_dtypes": [dtype],
        "output_sizes": [list(sizes)],
        "output_dtypes": [dtype],
        "state": state,
        "time_discovered_started_ns": started,
        "time_discovered_completed_ns": completed,
        "retired": state == "completed",
        "timeout_ms": 600000,
        "is_p2p": False,
    })
    return e


DEFAULT = ("0", "default_pg")
SUB = ("1", "undefined")
STACK0 = [frame("broadcast", "torch/distributed/distributed_c10d.py", 2715),
          frame("train_step", "/home/user/train.py", 42)]
STACK1 = [frame("all_gather", "torch/distributed/distributed_c10d.py", 3380),
          frame("gather_metrics", "/home/user/train.py", 77)]


def dump(rank, entries, pg_status):
    return {
        "version": "2.10",
        "pg_config": {
            "0": {"name": "0", "desc": "default_pg", "ranks": "[0, 1]"},
            "1": {"name": "1", "desc": "undefined", "ranks": "[0, 1]"},
        },
        "comm_lib_version": "2.21.5",
        "pg_status": pg_status,
        "entries": entries,
        "nccl_comm_state": {"0x7f2a1c0": {"rank": str(rank), "nranks": "2"}},
    }


rank0 = dump(0, [
    entry(0, DEFAULT, 1, "nccl:all_reduce", "completed", (1024,), duration=0.25),
    entry(1, DEFAULT, 2, "nccl:broadcast", "started", (4096,), frames=STACK0),
], {"0": {"last_enqueued_collective": 2, "last_started_collective": 2, "last_completed_collective": 1}})
rank1 = dump(1, [
    entry(0, DEFAULT, 1, "nccl:all_reduce", "completed", (1024,), duration=0.31),
    entry(1, SUB, 1, "nccl:all_gather", "started", (8,), frames=STACK1),
], {"0": {"last_enqueued_collective": 1, "last_started_collective": 1, "last_completed_collective": 1},
    "1": {"last_enqueued_collective": 1, "last_started_collective": 1, "last_completed_collective": -1}})

old = {
    "version": "2.3",
    "pg_config": {"0": {"name": "0", "desc": "default_pg", "ranks": "[0]"}},
    "pg_status": {"0": {"last_enqueued_collective": 1, "last_started_collective": 1, "last_completed_collective": 1}},
    "entries": [{k: v for k, v in entry(0, DEFAULT, 1, "nccl:all_reduce", "completed", (2, 2), dtype="Half").items()
                 if k not in ("thread_name", "thread_id")}],
}


def write(path, obj, protocol):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(pickle.dumps(obj, protocol=protocol))


write(os.path.join(HERE, "pytorch", "nccl_trace_rank_0"), rank0, 2)
write(os.path.join(HERE, "pytorch", "nccl_trace_rank_1"), rank1, 2)
write(os.path.join(HERE, "pytorch_old", "nccl_trace_rank_0"), old, 5)

# One small dump in every pickle protocol Python writes (0 to 5), for the
# restricted unpickler: text opcodes (protocol 0), binary ones without PROTO
# (1), PROTO 3's, and FRAME/SHORT_BINUNICODE/MEMOIZE (4, 5).
small = {
    "version": "2.10",
    "pg_config": {"0": {"name": "0", "desc": "default_pg", "ranks": "[0]"}},
    "pg_status": {"0": {"last_enqueued_collective": 1, "last_started_collective": 1, "last_completed_collective": 1}},
    "entries": [entry(0, DEFAULT, 1, "gloo:all_reduce", "completed", (2,), duration=1.5)],
}
for protocol in range(6):
    write(os.path.join(HERE, "protocols", "protocol%d.pkl" % protocol), small, protocol)
