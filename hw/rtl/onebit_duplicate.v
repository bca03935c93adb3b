// DuplicateStreams (the residual fork): every step reads one beat and writes it to both outputs, so it
// fires only when both output FIFOs have room. Steps per frame: the input beats; pipeline depth 0.
`default_nettype none
module onebit_duplicate #(
    parameter integer W = 8
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [W-1:0] in_data,
    output wire         out0_reserve,
    output wire         out0_valid,
    input  wire         out0_room,
    output wire [W-1:0] out0_data,
    output wire         out1_reserve,
    output wire         out1_valid,
    input  wire         out1_room,
    output wire [W-1:0] out1_data
);
    wire fire = in_valid && out0_room && out1_room;
    assign in_ready = fire;
    assign out0_reserve = fire;
    assign out0_valid = fire;
    assign out0_data = in_data;
    assign out1_reserve = fire;
    assign out1_valid = fire;
    assign out1_data = in_data;
endmodule
`default_nettype wire
