"""A fingerprint of everything onebit computes for a design: the dataflow graph, every node's cycle, resource
and folding figures, its step layout and pipeline depth, the executor's every tensor, the simulator's every
event time and every beat's cycle on every edge (unbounded FIFOs and the RTL's FIFO depths), and the text of
every generated RTL file. Two fingerprints taken on two versions of onebit show whether a change altered any
of it, and name the first thing that differs.

Designs (random weights, seed 0): the tiny WRN (8x8 digits), the CNV-like net of ``benchmarks/hw.py``, and
WRN-20-10 (4-bit shifted ReLU). About a minute and a half in all on 2 cores.

    python benchmarks/fingerprint.py --out before.json          # on one version
    python benchmarks/fingerprint.py --out after.json           # on the other
    python benchmarks/fingerprint.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import RESULTS_DIR, command_line, machine_info, write_json

DESIGNS = ("tiny", "cnv", "wrn-20-10")


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


def text_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def build_graph(name: str, folder: Path) -> Path:
    from _graphs import folded_wrn

    if name == "tiny":
        return folded_wrn(folder, "tiny", 2000.0, 100.0, in_channels=1, size=8)
    if name == "cnv":
        from hw import cnv_graph

        return cnv_graph(folder, 0.25, 500.0, 50.0)[0]
    if name == "wrn-20-10":
        return folded_wrn(folder, "wrn-20-10", 100.0, 100.0, act="srelu", abits=4)
    raise SystemExit(f"error: unknown design {name!r}; expected one of {', '.join(DESIGNS)}")


def _schedule_arrays(s) -> tuple[list, dict]:
    """Per layer the event times, per edge the read times (the names changed once; both are accepted)."""
    times = getattr(s, "step_times", None) or s.T
    reads = getattr(s, "edge_reads", None) or s.R
    return times, reads


def schedule_print(res) -> dict:
    s = res.schedule
    times, reads = _schedule_arrays(s)
    net = res.net
    return {"frames": int(s.n), "simulated_frames": int(res.simulated_frames),
            "layers": {lm.name: digest(times[i]) for i, lm in enumerate(net.layers)},
            "edges": {e.name: digest(reads[e.index]) for e in net.edges},
            "done": digest(res.done), "start": digest(res.start), "ii": int(res.ii), "latency": int(res.latency),
            "needed": {net.edges[i].name: int(d) for i, d in sorted(res.needed.items())},
            "steady": list(res.steady) if res.steady else None}


def node_print(op, lm) -> dict:
    res = {k: (int(v) if isinstance(v, (int, np.integer)) else v) for k, v in op.resources().items()}
    return {"op_type": op.onnx_node.op_type, "exp_cycles": int(op.exp_cycles()), "folding": op.folding(),
            "resources": res, "instream": [int(op.instream_width(i)) for i in op.stream_inputs()],
            "outstream": int(op.outstream_width()), "period": int(lm.period), "latency": int(lm.latency),
            "layout": digest(lm.pos, lm.writes, *lm.reads)}


def fingerprint(name: str, folder: Path, frames: int, rtl: bool) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper

    from onebit.hw.build import random_inputs
    from onebit.sim.network import Network
    try:
        from onebit.export.dataflow.executor import execute
        from onebit.sim.simulation import simulate
    except ImportError:  # onebit before the executor and the simulation entry had modules of their own
        from onebit.export.dataflow.graph import execute
        from onebit.sim.network import simulate

    t0 = time.perf_counter()
    path = build_graph(name, folder)
    model = ModelWrapper(str(path))
    out: dict = {"graph": {}, "nodes": {}}
    for node in model.graph.node:
        out["graph"][node.name] = text_digest(node.SerializeToString(deterministic=True))
    for init in model.graph.initializer:
        out["graph"]["init " + init.name] = digest(model.get_initializer(init.name))
    net = Network(model)
    for lm in net.layers:
        out["nodes"][lm.name] = node_print(lm.op, lm)
    x = random_inputs(model, frames, seed=1)
    taps = execute(model, x, taps=True)
    out["tensors"] = {k: digest(v) for k, v in sorted(taps.items())}
    res = simulate(model, frames=frames, inputs=x)
    out["sim_unbounded"] = schedule_print(res)
    out["outputs"] = {k: digest(v) for k, v in sorted(res.outputs.items())}
    depths = {net.edges[i].tensor: d for i, d in res.needed.items()}
    out["sim_rtl_depths"] = schedule_print(simulate(model, frames=frames, depths=depths, fifo_sizing=False))
    if rtl:
        from onebit.hw.top import generate

        design = generate(model, folder / f"{name}_hw")
        out["rtl"] = {str(p.relative_to(design.rtl)): text_digest(p.read_bytes())
                      for p in sorted(design.rtl.rglob("*")) if p.is_file()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def onebit_commit() -> str | None:
    """The git commit of the onebit being fingerprinted (None outside a checkout)."""
    import subprocess

    import onebit

    folder = Path(onebit.__file__).resolve().parent
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def first_difference(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k == "seconds":
                continue
            if k not in a or k not in b:
                return f"{where}/{k}: only in {'the second' if k not in a else 'the first'}"
            d = first_difference(a[k], b[k], f"{where}/{k}")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def compare(a_path: Path, b_path: Path) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    status = 0
    for name in sorted(set(a["designs"]) | set(b["designs"])):
        if name not in a["designs"] or name not in b["designs"]:
            print(f"{name}: in one fingerprint only")
            continue
        d = first_difference(a["designs"][name], b["designs"][name])
        da = a["designs"][name]
        counts = (f"{len(da['nodes'])} layers, {len(da['tensors'])} tensors, "
                  f"{len(da['sim_unbounded']['edges'])} edges x 2 schedules, {len(da.get('rtl', {}))} RTL files")
        print(f"{name}: {'IDENTICAL' if d is None else 'DIFFERENT at ' + d} ({counts})")
        status |= d is not None
    return status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--wrn-frames", type=int, default=1)
    p.add_argument("--no-wrn-rtl", action="store_true", help="skip WRN-20-10's RTL (its memories: 26M weights)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    result = {"command": command_line(), "machine": machine_info(), "onebit_commit": onebit_commit(), "designs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.designs:
            wrn = name == "wrn-20-10"
            folder = Path(tmp) / name
            folder.mkdir()
            r = fingerprint(name, folder, args.wrn_frames if wrn else args.frames, not (wrn and args.no_wrn_rtl))
            result["designs"][name] = r
            print(f"{name}: {len(r['nodes'])} layers, {len(r['tensors'])} tensors, {len(r.get('rtl', {}))} RTL "
                  f"files, II {r['sim_unbounded']['ii']}, {r['seconds']} s")
    out = args.out or RESULTS_DIR / "fingerprint.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
