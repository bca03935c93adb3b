// ChannelPad: per pixel CO steps (output channel folds); the first CI also read a beat and pass it on, the
// rest write zero channels. Pipeline depth 0.
`default_nettype none
module onebit_channelpad #(
    parameter integer W = 8,           // PE * element bits (one beat)
    parameter integer CI = 1,          // NumChannels / PE
    parameter integer CO = 2           // OutChannels / PE
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [W-1:0] in_data,
    output wire         out_reserve,
    output wire         out_valid,
    input  wire         out_room,
    output wire [W-1:0] out_data
);
    localparam integer FW = $clog2(CO + 1);  // holds CI too
    reg [FW-1:0] fold;
    wire rd = fold < FW'(CI);
    wire fire = out_room && (in_valid || !rd);
    assign in_ready = fire && rd;
    assign out_reserve = fire;
    assign out_valid = fire;
    assign out_data = rd ? in_data : {W{1'b0}};

    always @(posedge clk) begin
        if (rst) fold <= 0;
        else if (fire) fold <= fold == FW'(CO - 1) ? 0 : fold + 1'b1;
    end
endmodule
`default_nettype wire
