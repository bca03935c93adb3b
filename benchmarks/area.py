"""Area by layer: each layer's and FIFO's logic cells, flip-flops and block RAMs in the ECP5 netlist.

The design is synthesised with Yosys's ``synth_ecp5 -noflatten`` (onebit's memory rules as in ``onebit build``),
so every instance of the generated top keeps its own cells; the counts are those of its module. Without
flattening Yosys cannot optimise across layers, so the total is somewhat above a flat synthesis's (both are
printed when ``--flat`` is given). LUT positions count an ECP5 CCU2C carry cell as two and a TRELLIS_DPR16X4 LUT
RAM as four, as ``onebit build`` does. For each MVAU the LUT positions per MAC lane (PE x SIMD) and its weight
and input widths are given.

    python benchmarks/area.py --size 8 --flat                   # the tiny WRN (random weights, 8x8) for 1000 frames/s
    python benchmarks/area.py --arch wrn-8-2 --size 28 --in-channels 1 --fps 1000
    python benchmarks/area.py --graph RUN/fold/model.folded.onnx  # a folded graph of your own (onebit run's)

Output: ``benchmarks/results/area_<name>.json`` (``--out``): per layer and per op type, with the machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from _common import RESULTS_DIR, command_line, format_table, machine_info, write_json
from _graphs import folded_wrn

KINDS = ("LUT4", "CCU2C", "TRELLIS_DPR16X4", "PFUMX", "L6MUX21", "TRELLIS_FF", "DP16KD")


def lut_positions(c: dict) -> int:
    return c.get("LUT4", 0) + 2 * c.get("CCU2C", 0) + 4 * c.get("TRELLIS_DPR16X4", 0)


def hierarchical_synthesis(rtl: Path) -> tuple[dict, dict, float]:
    """Yosys without flattening: {module: cell counts (submodules expanded)}, {top instance: module}, seconds."""
    from onebit.hw import tools
    from onebit.hw.synth import SMALL_MEMORIES

    meta = json.loads((rtl / "design.json").read_text())
    top = meta["top"] if isinstance(meta.get("top"), str) else "onebit_top"
    work = rtl / "area"
    work.mkdir(exist_ok=True)
    cmds = [f"synth_ecp5 -noflatten -top {top} -run :map_ram"]
    for sel in SMALL_MEMORIES:
        cmds += [f'setattr -set ram_style "distributed" {sel} r:WR_PORTS>=1 %i',
                 f'setattr -set rom_style "logic" {sel} r:WR_PORTS=0 %i']
    cmds += [f"synth_ecp5 -noflatten -top {top} -run map_ram:", "tee -q -o area/stat.json stat -json",
             "write_json -noscopeinfo area/netlist.json"]
    (work / "area.ys").write_text("\n".join([f"read_verilog -defer -sv {' '.join(meta['files'])}",
                                             f"hierarchy -top {top}", *cmds]) + "\n")
    t0 = time.perf_counter()
    tools.run([*tools.yowasp("yosys"), "-q", "-s", "area/area.ys"], cwd=rtl, timeout=7200, log=work / "yosys.log",
              what="yosys (hierarchical)")
    seconds = time.perf_counter() - t0
    modules = json.loads((work / "stat.json").read_text())["modules"]
    netlist = json.loads((work / "netlist.json").read_text())["modules"]
    (work / "netlist.json").unlink()  # large; the counts are kept

    def flat(name: str) -> Counter:
        out: Counter = Counter()
        for kind, n in modules[name]["num_cells_by_type"].items():
            if kind in modules:
                for k, v in flat(kind).items():
                    out[k] += v * n
            elif not kind.startswith("$scopeinfo"):
                out[kind] += n
        return out

    counts = {name: dict(flat(name)) for name in modules}
    top_name = next(n for n in netlist if netlist[n].get("attributes", {}).get("top"))
    instances = {cell: c["type"] for cell, c in netlist[top_name]["cells"].items()}
    return {"modules": counts, "top": counts.get(f"\\{top}", counts.get(top_name, {}))}, instances, seconds


def layer_rows(rtl: Path, counts: dict, instances: dict) -> list[dict]:
    meta = json.loads((rtl / "design.json").read_text())
    what = {x["instance"]: (x["name"], x["op_type"], x.get("params", {})) for x in meta["layers"]}
    what.update({x["instance"]: (f"FIFO {x['edge']}", "FIFO", {"DEPTH": x["depth"], "W": x["width"]})
                 for x in meta["fifos"] if "instance" in x})
    rows = []
    for inst, module in instances.items():
        name, op, params = what.get(inst, (inst, "other", {}))
        c = counts["modules"].get(module, {})
        row = {"instance": inst, "layer": name, "op": op, "luts": lut_positions(c),
               **{k: c.get(k, 0) for k in KINDS}}
        if op == "MVAU":
            lanes = params.get("PE", 1) * params.get("SIMD", 1)
            row.update(lanes=lanes, in_bits=params.get("IW"), weight_bits=params.get("WBITS", 1),
                       luts_per_lane=round(row["luts"] / lanes, 1))
        if op == "FIFO":
            row.update(depth=params["DEPTH"], width=params["W"])
        rows.append(row)
    return sorted(rows, key=lambda r: -r["luts"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graph", type=Path, default=None, help="a folded dataflow graph (default: a WRN, below)")
    p.add_argument("--arch", default="tiny")
    p.add_argument("--size", type=int, default=None, help="input size (default: the arch's)")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--fps", type=float, default=1000.0)
    p.add_argument("--clock-mhz", type=float, default=50.0)
    p.add_argument("--device", default="ecp5-25k", help="for --flat: the device of the flat synthesis")
    p.add_argument("--flat", action="store_true", help="also the flat synthesis (onebit build's), for the total")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    from onebit.export.dataflow.graph import load_dataflow
    from onebit.hw.top import generate

    name = args.graph.parent.parent.name if args.graph else \
        f"{args.arch}{f'-{args.size}x{args.size}' if args.size else ''}-{args.fps:g}fps"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        graph = args.graph or folded_wrn(tmp, args.arch, args.fps, args.clock_mhz, in_channels=args.in_channels,
                                         size=args.size)
        design = generate(load_dataflow(graph), tmp / "design")
        counts, instances, seconds = hierarchical_synthesis(design.rtl)
        rows = layer_rows(design.rtl, counts, instances)
        flat = None
        if args.flat:
            from onebit.hw.synth import synthesize

            r = synthesize(design, device=args.device, clock_mhz=args.clock_mhz, out_dir=tmp / "synth", pnr=False)
            flat = {"resources": r["resources"], "seconds": r["seconds"]}
    by_op: dict = defaultdict(Counter)
    for r in rows:
        by_op[r["op"]].update({k: r[k] for k in ("luts", "TRELLIS_FF", "DP16KD")} | {"count": 1})
    total = {k: sum(r[k] for r in rows) for k in ("luts", "TRELLIS_FF", "DP16KD")}
    print(format_table(["layer", "op", "LUT pos.", "LUT4", "carry", "LUT RAM", "FF", "BRAM", "LUT/lane"],
                       [[r["layer"][:48], r["op"], f"{r['luts']:,}", r["LUT4"], r["CCU2C"], r["TRELLIS_DPR16X4"],
                         r["TRELLIS_FF"], r["DP16KD"], r.get("luts_per_lane", "")] for r in rows[:40]]))
    print(format_table(["op", "layers", "LUT pos.", "share", "FF", "BRAM"],
                       [[op, c["count"], f"{c['luts']:,}", f"{100 * c['luts'] / max(total['luts'], 1):.1f} %",
                         f"{c['TRELLIS_FF']:,}", c["DP16KD"]] for op, c in
                        sorted(by_op.items(), key=lambda kv: -kv[1]["luts"])]))
    print(f"total (hierarchical): {total['luts']:,} LUT positions, {total['TRELLIS_FF']:,} FF, {total['DP16KD']} "
          f"BRAM; Yosys {seconds:.0f} s" + (f"; flat synthesis: {flat['resources']}" if flat else ""))
    out = args.out or RESULTS_DIR / f"area_{name}.json"
    write_json(out, {"command": command_line(), "machine": machine_info(), "design": name,
                     "graph": str(args.graph) if args.graph else None, "total": total,
                     "by_op": {k: dict(v) for k, v in by_op.items()}, "layers": rows, "flat": flat,
                     "yosys_seconds": round(seconds, 1)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
