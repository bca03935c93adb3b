// Stream FIFO on a dataflow edge.
//
// The producer reserves a slot in the cycle of its writing step (in_reserve, allowed only while in_room)
// and delivers the beat on in_valid/in_data its pipeline depth later. Flags are registered: a beat
// delivered in cycle t is offered from t+1, and a slot popped in t is free again from t+1. These are
// the edge semantics of onebit's simulator (sim/network.py), so the RTL runs its schedule exactly.
//
// Shallow FIFOs (DEPTH < RAM_DEPTH) read their memory asynchronously: LUT RAM or registers. Deeper ones keep
// their beats in a memory read through a register, so that it maps to block RAM, in front of which the
// oldest beat waits in a head register (hd) and the next in the memory's read register (q): out_data is hd,
// else q. A beat delivered while nothing is held goes straight to hd; every other beat goes to the memory,
// which refills q in the cycle q is emptied, so the head is never missing while beats are held.
`default_nettype none
module onebit_fifo #(
    parameter integer W = 8,
    parameter integer DEPTH = 2,
    parameter integer RAM_DEPTH = 64  // from this depth on: the block-RAM style
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_reserve,
    input  wire         in_valid,
    input  wire [W-1:0] in_data,
    output wire         in_room,
    output wire         out_valid,
    input  wire         out_ready,
    output wire [W-1:0] out_data
);
    localparam integer AW = DEPTH > 1 ? $clog2(DEPTH) : 1;
    localparam integer CW = $clog2(DEPTH + 1);
    reg [CW-1:0] used;  // reserved and not yet popped
    wire pop = out_ready && out_valid;
    assign in_room = used != DEPTH[CW-1:0];

    always @(posedge clk) begin
        if (rst) used <= 0;
        else used <= used + CW'(in_reserve) - CW'(pop);
    end

    reg [W-1:0] mem [0:DEPTH-1];
    reg [AW-1:0] wr_ptr, rd_ptr;
    generate
        if (DEPTH < RAM_DEPTH) begin : lut
            reg [CW-1:0] count;  // delivered and not yet popped
            assign out_valid = count != 0;
            assign out_data = mem[rd_ptr];
            always @(posedge clk) begin
                if (rst) begin
                    wr_ptr <= 0;
                    rd_ptr <= 0;
                    count <= 0;
                end else begin
                    if (in_valid) begin
                        mem[wr_ptr] <= in_data;
                        wr_ptr <= wr_ptr == AW'(DEPTH - 1) ? 0 : wr_ptr + 1'b1;
                    end
                    if (pop) rd_ptr <= rd_ptr == AW'(DEPTH - 1) ? 0 : rd_ptr + 1'b1;
                    count <= count + CW'(in_valid) - CW'(pop);
                end
            end
        end else begin : bram
            reg [W-1:0] hd, q;
            reg hv, qv;          // hd, q hold a beat (hd the oldest)
            reg [CW-1:0] in_mem; // beats in the memory
            assign out_valid = hv || qv;
            assign out_data = hv ? hd : q;
            // after this cycle's pop: what stays in hd and q
            wire hv_left = hv && !pop;
            wire qv_left = qv && !(pop && !hv);
            wire to_hd = !hv_left && qv_left;                // q moves up into hd
            wire q_free = !qv_left || to_hd;
            wire rd = q_free && in_mem != 0;                  // the memory refills q
            wire direct = !hv_left && !qv_left && in_mem == 0; // nothing held: the new beat goes to hd
            wire wr = in_valid && !direct;
            always @(posedge clk) begin
                if (wr) mem[wr_ptr] <= in_data;
                if (rd) q <= mem[rd_ptr];
            end
            always @(posedge clk) begin
                if (to_hd) hd <= q;
                else if (in_valid && direct) hd <= in_data;
                if (rst) begin
                    wr_ptr <= 0;
                    rd_ptr <= 0;
                    in_mem <= 0;
                    hv <= 1'b0;
                    qv <= 1'b0;
                end else begin
                    hv <= hv_left || to_hd || (in_valid && direct);
                    qv <= (qv_left && !to_hd) || rd;
                    if (wr) wr_ptr <= wr_ptr == AW'(DEPTH - 1) ? 0 : wr_ptr + 1'b1;
                    if (rd) rd_ptr <= rd_ptr == AW'(DEPTH - 1) ? 0 : rd_ptr + 1'b1;
                    in_mem <= in_mem + CW'(wr) - CW'(rd);
                end
            end
        end
    endgenerate
endmodule
`default_nettype wire
