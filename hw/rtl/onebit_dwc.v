// StreamingDataWidthConverter: re-packs IW-bit beats into OW-bit beats (element order kept; the widths need
// not divide each other). A buffer holds the `have` bits read and not yet written, lowest first. Each step
// reads a beat if fewer than OW bits are buffered and writes a beat if then OW bits are there: down-sizing
// writes every step and reads a beat when its first part is needed, up-sizing reads every step and writes
// a beat with its last part -- the simulator's layout. A frame is whole beats on both sides, so the buffer
// is empty between frames. Pipeline depth 0.
`default_nettype none
module onebit_dwc #(
    parameter integer IW = 8,
    parameter integer OW = 8
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          in_valid,
    output wire          in_ready,
    input  wire [IW-1:0] in_data,
    output wire          out_reserve,
    output wire          out_valid,
    input  wire          out_room,
    output wire [OW-1:0] out_data
);
    localparam integer BW = IW > OW ? IW : OW;     // the buffer never holds more than max(IW, OW) - 1 bits
    localparam integer CW = IW + OW;
    localparam integer HW = $clog2(CW + 1);
    reg [BW-1:0] buffer;                           // zero above `have`
    reg [HW-1:0] have;
    wire rd = have < HW'(OW);
    wire [HW-1:0] total = rd ? have + HW'(IW) : have;
    wire wr = total >= HW'(OW);
    wire fire = (in_valid || !rd) && (out_room || !wr);
    wire [CW-1:0] merged = CW'(buffer) | (rd ? CW'(in_data) << have : {CW{1'b0}});
    wire [CW-1:0] rest = wr ? merged >> OW : merged;

    assign in_ready = fire && rd;
    assign out_reserve = fire && wr;
    assign out_valid = fire && wr;
    assign out_data = merged[OW-1:0];

    always @(posedge clk) begin
        if (rst) begin
            buffer <= 0;
            have <= 0;
        end else if (fire) begin
            buffer <= rest[BW-1:0];
            have <= wr ? total - HW'(OW) : total;
        end
    end
endmodule
`default_nettype wire
