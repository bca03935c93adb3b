// Thresholding layer: every step reads one beat of PE channels and writes their thresholded values.
// Steps per frame: pixels * NF (FINN's cycles); output pipeline depth: STAGES (onebit_thresh).
`default_nettype none
module onebit_thresholding #(
    parameter integer PE = 1,
    parameter integer NF = 1,          // NumChannels / PE
    parameter integer IW = 8,
    parameter integer IN_SIGNED = 1,
    parameter integer TW = 9,
    parameter integer STAGES = 8,
    parameter integer OB = 8,
    parameter integer OUT_BIAS = 0,
    parameter integer SHARED = 0,
    parameter MEM = "thr"
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             in_valid,
    output wire             in_ready,
    input  wire [PE*IW-1:0] in_data,
    output wire             out_reserve,
    output wire             out_valid,
    input  wire             out_room,
    output wire [PE*OB-1:0] out_data
);
    localparam integer FW = NF > 1 ? $clog2(NF) : 1;
    reg [FW-1:0] fold;
    wire fire = in_valid && out_room;
    assign in_ready = fire;
    assign out_reserve = fire;

    always @(posedge clk) begin
        if (rst) fold <= 0;
        else if (fire) fold <= fold == FW'(NF - 1) ? 0 : fold + 1'b1;
    end

    onebit_thresh #(.PE(PE), .IW(IW), .IN_SIGNED(IN_SIGNED), .TW(TW), .STAGES(STAGES), .NF(NF), .OB(OB),
                    .OUT_BIAS(OUT_BIAS), .SHARED(SHARED), .MEM(MEM))
        thresh (.clk(clk), .fold(fold), .x(in_data), .y(out_data));

    onebit_delay #(.D(STAGES)) valid_delay (.clk(clk), .rst(rst), .d(fire), .q(out_valid));
endmodule

`default_nettype wire
