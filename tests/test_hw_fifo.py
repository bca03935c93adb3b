"""``onebit_fifo`` on its own, cycle by cycle against a model of the edge semantics (the simulator's): random
depths (both sides of the block-RAM style's threshold), producer pipeline depths, reservation and pop
patterns, so the direct, memory and read-register paths all run with stalls on both sides."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from onebit.hw import tools
from onebit.hw.layers.base import RTL_DIR

TB = """`default_nettype none
module fifo_tb (input wire clk);
    localparam integer N = {n};
    reg [1:0] stim [0:N-1];  // bit 0: the producer wants to reserve; bit 1: the consumer is ready
    integer cycle = 0, fd, seq = 0, dseq = 0;
    reg [3:0] rcount = 0;
    wire rst = rcount < 4'd3;
    wire room, valid;
    wire [15:0] data;
    wire reserve = !rst && stim[cycle][0] && room;
    wire ready = !rst && stim[cycle][1];
    reg [{pw}:0] pipe = 0;  // reservations in flight through the producer's pipeline
    wire deliver = {deliver};
    initial begin
        $readmemh("stim.hex", stim);
        fd = $fopen("trace.txt", "w");
    end
    onebit_fifo #(.W(16), .DEPTH({depth})) dut (.clk(clk), .rst(rst), .in_reserve(reserve), .in_valid(deliver),
        .in_data(16'(dseq)), .in_room(room), .out_valid(valid), .out_ready(ready), .out_data(data));
    always @(posedge clk) begin
        if (rst) rcount <= rcount + 1'b1;
        else begin
            $fwrite(fd, "%0d %0d %0d %0d\\n", room, valid, valid ? data : 0, ready && valid);
            pipe <= {{pipe[{pw}-1:0], reserve}};
            if (deliver) dseq <= dseq + 1;
            cycle <= cycle + 1;
            if (cycle == N - 1) begin $fclose(fd); $finish; end
        end
    end
endmodule
"""


def model_trace(stim: np.ndarray, depth: int, pd: int) -> list[tuple[int, int, int, int]]:
    """The edge semantics: room and offered beats from registered counters (a beat delivered in cycle t is
    offered from t+1, a slot popped in t is free from t+1); the producer delivers ``pd`` cycles after it
    reserves."""
    used, queue, ready_beats, trace, seq, pipe = 0, deque(), deque(), [], 0, deque([0] * pd)
    for want, ready in stim:
        room = used != depth
        reserve = bool(want) and room
        valid = len(queue) > 0
        pop = bool(ready) and valid
        trace.append((int(room), int(valid), queue[0] if valid else 0, int(pop)))
        pipe.append(int(reserve))
        deliver = pipe.popleft()
        if pop:
            queue.popleft()
        used += int(reserve) - int(pop)
        if deliver:
            ready_beats.append(seq)
            seq += 1
        queue.extend(ready_beats)
        ready_beats.clear()
    return trace


@pytest.mark.parametrize("depth,pd,seed", [(1, 0, 0), (1, 2, 1), (2, 0, 2), (2, 1, 3), (3, 0, 4), (5, 3, 5),
                                           (16, 1, 6), (40, 2, 7), (63, 1, 9), (64, 0, 10), (65, 1, 11),
                                           (64, 3, 12), (100, 2, 13), (300, 4, 8), (1000, 0, 14)])
def test_fifo_matches_the_edge_semantics(tmp_path, depth, pd, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    # phases of eager and slow producers and consumers, so the FIFO runs full, empty and in between
    p_want = np.repeat(rng.choice([0.2, 0.6, 0.95, 1.0], n // 100), 100)
    p_ready = np.repeat(rng.choice([0.1, 0.5, 0.9, 1.0], n // 100), 100)
    stim = np.stack([rng.random(n) < p_want, rng.random(n) < p_ready], axis=1).astype(int)
    (tmp_path / "stim.hex").write_text("".join(f"{w + 2 * r:x}\n" for w, r in stim))
    deliver = "reserve" if pd == 0 else f"pipe[{pd - 1}]"
    (tmp_path / "fifo_tb.v").write_text(TB.format(n=n, depth=depth, pw=max(pd, 1), deliver=deliver))
    (tmp_path / "main.cpp").write_text(
        '#include "Vfifo_tb.h"\n#include "verilated.h"\nint main(int argc, char** argv) {\n'
        '  VerilatedContext* ctx = new VerilatedContext; ctx->commandArgs(argc, argv);\n'
        '  Vfifo_tb* tb = new Vfifo_tb{ctx}; tb->clk = 0;\n'
        '  while (!ctx->gotFinish()) { tb->clk = !tb->clk; tb->eval(); }\n'
        '  tb->final(); delete tb; delete ctx; return 0; }\n')
    env = tools.verilator_env()
    tools.run([*tools.verilator_cmd(), "--cc", "--exe", "--build", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
               "-Wno-fatal", "--top-module", "fifo_tb", "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
               "fifo_tb.v", str(RTL_DIR / "onebit_fifo.v"), "main.cpp"], cwd=tmp_path, timeout=300, env=env)
    tools.run([str(tmp_path / "obj_dir" / "Vfifo_tb")], cwd=tmp_path, timeout=60, env=env)
    got = [tuple(int(v) for v in line.split()) for line in (tmp_path / "trace.txt").read_text().splitlines()]
    want = model_trace(stim, depth, pd)
    assert len(got) == n
    for t, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"cycle {t}: RTL (room, valid, data, pop) {g}, model {w}"
    assert sum(w[3] for w in want) > n // 10  # beats did flow
