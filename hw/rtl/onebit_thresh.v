// Multi-threshold unit: per lane, the number of sorted thresholds t_i with x >= t_i, found by a binary search
// with one pipeline stage (one comparator, one memory) per result bit. The thresholds of channel
// fold*PE + lane are padded to 2^STAGES - 1 with a value above every x; stage k's memory holds, for each
// fold, the 2^k thresholds it may compare with ({fold, prefix} addresses), from MEM_p<lane>_s<k>.mem (lane and
// stage in two digits each).
// SHARED = 1: every channel has the same thresholds (e.g. shifted ReLU without BN): one table of 2^k per
// stage, addressed by the prefix alone, from MEM_p00_s<k>.mem for every lane.
// y = count + OUT_BIAS (BIPOLAR: the count itself, 0 encoding -1) leaves STAGES cycles after `fire`.
`default_nettype none
module onebit_thresh #(
    parameter integer PE = 1,
    parameter integer IW = 8,          // input bits per lane
    parameter integer IN_SIGNED = 1,
    parameter integer TW = 9,          // threshold bits (signed)
    parameter integer STAGES = 8,
    parameter integer NF = 1,          // channel folds
    parameter integer OB = 8,          // output bits per lane
    parameter integer OUT_BIAS = 0,
    parameter integer SHARED = 0,
    parameter MEM = "thr"
) (
    input  wire                  clk,
    input  wire [FW-1:0]         fold,
    input  wire [PE*IW-1:0]      x,
    output wire [PE*OB-1:0]      y
);
    localparam integer FW = NF > 1 ? $clog2(NF) : 1;
    localparam integer CW = (IW + 1 > TW ? IW + 1 : TW);  // signed compare width

    genvar l, k;
    generate
        for (l = 0; l < PE; l = l + 1) begin : lane
            wire signed [CW-1:0] xin = IN_SIGNED != 0 ? CW'($signed(x[l*IW +: IW])) : CW'({1'b0, x[l*IW +: IW]});
            reg  signed [CW-1:0] xs [0:STAGES-1];
            reg  [FW-1:0]        fs [0:STAGES-1];
            reg  [STAGES-1:0]    pr [0:STAGES-1];  // pr[k]: the prefix stage k's memory was read with
            wire [STAGES-1:0]    ps [0:STAGES];    // ps[k]: prefix after k compares (low k bits), combinational
            assign ps[0] = 0;
            for (k = 0; k < STAGES; k = k + 1) begin : stage
                localparam [7:0] L1 = 8'd48 + 8'(SHARED != 0 ? 0 : l / 10);
                localparam [7:0] L0 = 8'd48 + 8'(SHARED != 0 ? 0 : l % 10);
                localparam [7:0] K1 = 8'd48 + 8'(k / 10);
                localparam [7:0] K0 = 8'd48 + 8'(k % 10);
                localparam integer DEPTH = (SHARED != 0 ? 1 : NF) * (1 << k);
                localparam integer AW = DEPTH > 1 ? $clog2(DEPTH) : 1;
                reg signed [TW-1:0] mem [0:DEPTH-1];
                initial $readmemh({MEM, "_p", L1, L0, "_s", K1, K0, ".mem"}, mem);
                reg signed [TW-1:0] thr;
                wire [FW-1:0] f_in = k == 0 ? fold : fs[k-1];
                wire [AW-1:0] addr;  // {fold, prefix} (prefix alone when SHARED) < DEPTH
                if (SHARED != 0 && k == 0) begin : a_shared0
                    assign addr = 0;
                end else if (SHARED != 0) begin : a_shared
                    assign addr = AW'(ps[k][k-1:0]);
                end else if (k == 0) begin : a0
                    assign addr = AW'(f_in);
                end else begin : ak
                    assign addr = AW'({f_in, ps[k][k-1:0]});
                end
                always @(posedge clk) begin
                    thr <= mem[addr];
                    xs[k] <= k == 0 ? xin : xs[k-1];
                    fs[k] <= f_in;
                    pr[k] <= ps[k];
                end
                wire ge = xs[k] >= CW'(thr);
                assign ps[k+1] = STAGES'({pr[k], ge});
            end
            assign y[l*OB +: OB] = OB'(ps[STAGES]) + OB'(OUT_BIAS);
        end
    endgenerate
endmodule
`default_nettype wire
