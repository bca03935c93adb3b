// Stream FIFO on a dataflow edge.
//
// The producer reserves a slot in the cycle of its writing step (in_reserve, allowed only while in_room)
// and delivers the beat on in_valid/in_data its pipeline depth later. Flags are registered: a beat
// delivered in cycle t is offered from t+1, and a slot popped in cycle t is free again from t+1. These are
// the edge semantics of onebit's simulator (sim/network.py), so the RTL runs its schedule exactly.
`default_nettype none
module onebit_fifo #(
    parameter integer W = 8,
    parameter integer DEPTH = 2
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
    reg [W-1:0] mem [0:DEPTH-1];
    reg [AW-1:0] wr_ptr, rd_ptr;
    reg [CW-1:0] used;   // reserved and not yet popped
    reg [CW-1:0] count;  // delivered and not yet popped
    wire pop = out_ready && count != 0;

    assign in_room = used != DEPTH[CW-1:0];
    assign out_valid = count != 0;
    assign out_data = mem[rd_ptr];

    always @(posedge clk) begin
        if (rst) begin
            wr_ptr <= 0;
            rd_ptr <= 0;
            used <= 0;
            count <= 0;
        end else begin
            if (in_valid) begin
                mem[wr_ptr] <= in_data;
                wr_ptr <= wr_ptr == AW'(DEPTH - 1) ? 0 : wr_ptr + 1'b1;
            end
            if (pop) rd_ptr <= rd_ptr == AW'(DEPTH - 1) ? 0 : rd_ptr + 1'b1;
            used <= used + CW'(in_reserve) - CW'(pop);
            count <= count + CW'(in_valid) - CW'(pop);
        end
    end
endmodule
`default_nettype wire
