// StreamingDataWidthConverter: re-packs IW-bit beats into OW-bit beats (element order kept; the widths need
// not divide each other). A buffer holds the `have` bits read and not yet written, lowest first. Each step
// reads a beat if fewer than OW bits are buffered and writes a beat if then OW bits are there: down-sizing
// writes every step and reads a beat when its first part is needed, up-sizing reads every step and writes
// a beat with its last part -- the simulator's layout. A frame is whole beats on both sides, so the buffer
// is empty between frames. Pipeline depth 0. Where one width is a multiple of the other the buffer is a shift
// register (down-sizing) or K-1 slots (up-sizing) instead of a shifter by a variable amount, which costs
// LUTs in proportion to the width times its logarithm.
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
    localparam integer K = IW > OW ? IW / OW : OW / IW;  // parts per beat where one width divides the other
    generate
        if (IW > OW && IW % OW == 0) begin : down
            // the step reading a beat writes its first part; the other K-1 wait in a shift register
            localparam integer PW = $clog2(K);
            reg [IW-OW-1:0] rest;
            reg [PW-1:0] part;
            wire rd = part == 0;
            wire fire = (in_valid || !rd) && out_room;
            assign in_ready = fire && rd;
            assign out_reserve = fire;
            assign out_valid = fire;
            assign out_data = rd ? in_data[OW-1:0] : rest[OW-1:0];
            always @(posedge clk) begin
                if (fire) rest <= rd ? in_data[IW-1:OW] : (IW - OW)'(rest >> OW);
                if (rst) part <= 0;
                else if (fire) part <= part == PW'(K - 1) ? 0 : part + 1'b1;
            end
        end else if (OW > IW && OW % IW == 0) begin : up
            // K-1 beats wait in their slots; the step reading the last writes the whole beat
            localparam integer PW = $clog2(K);
            reg [OW-IW-1:0] got;
            reg [PW-1:0] part;
            wire wr = part == PW'(K - 1);
            wire fire = in_valid && (out_room || !wr);
            assign in_ready = fire;
            assign out_reserve = fire && wr;
            assign out_valid = fire && wr;
            assign out_data = {in_data, got};
            integer s;
            always @(posedge clk) begin
                for (s = 0; s < K - 1; s = s + 1)
                    if (fire && part == PW'(s)) got[s*IW +: IW] <= in_data;
                if (rst) part <= 0;
                else if (fire) part <= wr ? 0 : part + 1'b1;
            end
        end else begin : any
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
        end
    endgenerate
endmodule
`default_nettype wire
