// Pool (AccPool sum or MaxPool) over the taps of a depthwise sliding-window stream: per output pixel K taps,
// each CF beats of PE channels (tap-major, channel fold minor). Step k reads beat k; the last tap of each
// channel fold also writes. One accumulator per fold, in a memory read one cycle ahead (the address is the
// fold counter's next value) so that it can map to block RAM. Steps per frame: pixels * K * CF.
`default_nettype none
module onebit_pool #(
    parameter integer PE = 1,
    parameter integer CF = 1,          // Channels / PE
    parameter integer K = 1,           // taps per window
    parameter integer IB = 8,          // input element bits
    parameter integer IN_SIGNED = 0,
    parameter integer IN_BIPOLAR = 0,  // bit 0/1 means -1/+1
    parameter integer OB = 8,          // output element bits
    parameter integer OUT_BIPOLAR = 0,
    parameter integer MAX = 0          // 0: sum (AccPool), 1: maximum (MaxPool)
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             in_valid,
    output wire             in_ready,
    input  wire [PE*IB-1:0] in_data,
    output wire             out_reserve,
    output wire             out_valid,
    input  wire             out_room,
    output wire [PE*OB-1:0] out_data
);
    localparam integer XW = IB + 1;                 // an input value, sign-extended
    localparam integer AW = OB > XW ? OB : XW;      // accumulator
    localparam integer FW = CF > 1 ? $clog2(CF) : 1;
    localparam integer TW = K > 1 ? $clog2(K) : 1;

    reg [FW-1:0] f;
    reg [TW-1:0] t;
    wire first = t == 0;
    wire last = t == TW'(K - 1);
    wire fire = in_valid && (!last || out_room);
    wire last_f = f == FW'(CF - 1);
    wire [FW-1:0] f_next = fire ? (last_f ? 0 : f + 1'b1) : f;

    reg [PE*AW-1:0] acc [0:CF-1];
    reg [PE*AW-1:0] acc_q;  // acc[f]
    wire [PE*AW-1:0] acc_new;
    wire acc_we = fire && !last;

    genvar l;
    generate
        for (l = 0; l < PE; l = l + 1) begin : lane
            wire [IB-1:0] e = in_data[l*IB +: IB];
            wire signed [XW-1:0] xv = IN_BIPOLAR != 0 ? {{(XW - 1){!e[0]}}, 1'b1}
                                    : {IN_SIGNED != 0 ? e[IB-1] : 1'b0, e};
            wire signed [AW-1:0] xa = AW'(xv);
            wire signed [AW-1:0] a = acc_q[l*AW +: AW];
            wire signed [AW-1:0] y = first ? xa : MAX != 0 ? (xa > a ? xa : a) : a + xa;
            assign acc_new[l*AW +: AW] = y;
            assign out_data[l*OB +: OB] = OUT_BIPOLAR != 0 ? OB'(!y[AW-1]) : y[OB-1:0];
        end
    endgenerate

    assign in_ready = fire;
    assign out_reserve = fire && last;
    assign out_valid = fire && last;

    always @(posedge clk) begin
        if (acc_we) acc[f] <= acc_new;
        acc_q <= acc_we && f == f_next ? acc_new : acc[f_next];
    end

    always @(posedge clk) begin
        if (rst) begin
            f <= 0;
            t <= 0;
        end else if (fire) begin
            f <= f_next;
            if (last_f) t <= last ? 0 : t + 1'b1;
        end
    end
endmodule
`default_nettype wire
