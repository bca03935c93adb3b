// FMPadding: one step per output beat (row, column, channel fold); steps in_img the image also read
// and pass the beat on, the others write the zero code. Steps per frame: OH*OW*CF.
`default_nettype none
module onebit_fmpadding #(
    parameter integer BW = 8,   // beat width: SIMD * element bits
    parameter integer CF = 1,   // NumChannels / SIMD
    parameter integer H = 1,    // image
    parameter integer W = 1,
    parameter integer T = 0,    // padding top, left, bottom, right
    parameter integer L = 0,
    parameter integer B = 0,
    parameter integer R = 0
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          in_valid,
    output wire          in_ready,
    input  wire [BW-1:0] in_data,
    output wire          out_reserve,
    output wire          out_valid,
    input  wire          out_room,
    output wire [BW-1:0] out_data
);
    localparam integer OH = T + H + B;
    localparam integer OW = L + W + R;
    localparam integer YW = $clog2(OH + 1);
    localparam integer XW = $clog2(OW + 1);
    localparam integer FW = CF > 1 ? $clog2(CF) : 1;
    reg [YW-1:0] y;
    reg [XW-1:0] x;
    reg [FW-1:0] f;
    // signed compares: a bound of 0 would make an unsigned one constant (lint)
    wire in_img = $signed(32'(y)) >= T && $signed(32'(y)) < T + H && $signed(32'(x)) >= L
                  && $signed(32'(x)) < L + W;
    wire fire = (!in_img || in_valid) && out_room;
    wire last_f = f == FW'(CF - 1);
    wire last_x = x == XW'(OW - 1);

    assign in_ready = fire && in_img;
    assign out_reserve = fire;
    assign out_valid = fire;
    assign out_data = in_img ? in_data : {BW{1'b0}};

    always @(posedge clk) begin
        if (rst) begin
            y <= 0;
            x <= 0;
            f <= 0;
        end else if (fire) begin
            f <= last_f ? 0 : f + 1'b1;
            if (last_f) begin
                x <= last_x ? 0 : x + 1'b1;
                if (last_x) y <= y == YW'(OH - 1) ? 0 : y + 1'b1;
            end
        end
    end
endmodule
`default_nettype wire
