// MVAU (matrix-vector-activation unit): per step PE output channels x SIMD inputs, no multipliers.
// Per pixel NF*SF steps, nf-major (FINN's Matrix_Vector_Activate loop): the SF steps of fold nf = 0 read the
// input vector and keep it in a buffer for the later folds; every step with sf = SF-1 writes PE outputs.
// Weights are WBITS bit planes: weight word nf*SF + sf of WMEM.mem holds bit b of W[sf*SIMD + s][nf*PE + p] in
// bit b*PE*SIMD + p*SIMD + s. Each plane runs through its own adder trees of conditional adds.
// WBITS = 1: the bit is +1 / -1 if W_BIPOLAR (w.x = 2 * (sum of the x with w = +1) - sum of x), else 1 / 0.
// WBITS = k >= 2: w = sum_b 2^b * w_b, the top plane weighted -2^(k-1) if W_SIGNED (two's complement), so
// w.x = sum_b +-2^b * (sum of the x whose weight has bit b set): shifted adds, one subtract, same timing.
// Sums are SW-bit two's complement (every sum fits; partial sums may wrap). THRESH = 1: the sum goes through
// onebit_thresh and leaves STAGES cycles after the writing step; THRESH = 0: the sum itself, at once, OB bits.
`default_nettype none
module onebit_mvau #(
    parameter integer PE = 1,
    parameter integer SIMD = 1,
    parameter integer NF = 1,          // MH / PE
    parameter integer SF = 1,          // MW / SIMD
    parameter integer IW = 8,
    parameter integer IN_SIGNED = 1,
    parameter integer IN_BIPOLAR = 0,  // 1-bit inputs, code 0/1 for -1/+1
    parameter integer WBITS = 1,
    parameter integer W_BIPOLAR = 1,   // WBITS = 1: the bit is +1/-1 (else 1/0)
    parameter integer W_SIGNED = 1,    // WBITS >= 2: two's complement (else unsigned)
    parameter integer SW = 16,
    parameter integer THRESH = 1,
    parameter integer TW = 17,
    parameter integer STAGES = 1,
    parameter integer OB = 8,
    parameter integer OUT_BIAS = 0,
    parameter integer SHARED = 0,       // one threshold table for every channel (onebit_thresh)
    parameter WMEM = "w",
    parameter TMEM = "thr"
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               in_valid,
    output wire               in_ready,
    input  wire [SIMD*IW-1:0] in_data,
    output wire               out_reserve,
    output wire               out_valid,
    input  wire               out_room,
    output wire [PE*OB-1:0]   out_data
);
    localparam integer STEPS = NF * SF;
    localparam integer FW = NF > 1 ? $clog2(NF) : 1;
    localparam integer SFW = SF > 1 ? $clog2(SF) : 1;
    localparam integer AW = STEPS > 1 ? $clog2(STEPS) : 1;

    reg [FW-1:0] nf;
    reg [SFW-1:0] sf;
    reg [AW-1:0] step;  // nf*SF + sf, counted
    wire reads = nf == 0;
    wire writes = sf == SFW'(SF - 1);
    wire last = writes && nf == FW'(NF - 1);
    wire fire = (!reads || in_valid) && (!writes || out_room);
    assign in_ready = fire && reads;
    assign out_reserve = fire && writes;

    always @(posedge clk) begin
        if (rst) begin
            nf <= 0;
            sf <= 0;
            step <= 0;
        end else if (fire) begin
            sf <= writes ? 0 : sf + 1'b1;
            if (writes) nf <= last ? 0 : nf + 1'b1;
            step <= last ? 0 : step + 1'b1;
        end
    end

    // synchronous read addressed by the next step: the word is there in its step's cycle and holds in a stall
    localparam integer LANES = PE * SIMD;
    reg [WBITS*LANES-1:0] wmem [0:STEPS-1];
    initial $readmemh({WMEM, ".mem"}, wmem);
    reg [WBITS*LANES-1:0] w;
    wire [AW-1:0] next = rst || (fire && last) ? 0 : fire ? step + 1'b1 : step;
    always @(posedge clk) w <= wmem[next];

    wire [SIMD*IW-1:0] x;
    genvar s, p, i, b, t;
    generate
        if (NF > 1) begin : buffer
            reg [SIMD*IW-1:0] ibuf [0:SF-1];
            always @(posedge clk) if (fire && reads) ibuf[sf] <= in_data;
            assign x = reads ? in_data : ibuf[sf];
        end else begin : direct
            assign x = in_data;
        end

        wire [SW-1:0] xv [0:SIMD-1];
        for (s = 0; s < SIMD; s = s + 1) begin : elem
            wire [IW-1:0] e = x[s*IW +: IW];
            if (IN_BIPOLAR != 0) begin : bip
                assign xv[s] = SW'($signed({~e[0], 1'b1}));
            end else if (IN_SIGNED != 0) begin : sgn
                assign xv[s] = SW'($signed(e));
            end else begin : uns
                assign xv[s] = SW'(e);
            end
        end

        // sel[b*PE + p]: the sum of the elements whose weight in lane p has bit b set; sel[WBITS*PE]: the sum of
        // all elements (BIPOLAR weights)
        localparam integer TREES = WBITS * PE;
        wire [SW-1:0] sel [0:TREES];
        for (t = 0; t <= TREES; t = t + 1) begin : tree
            wire [SIMD-1:0] m;
            if (t == TREES) begin : all
                assign m = {SIMD{1'b1}};
            end else begin : lane
                assign m = w[t*SIMD +: SIMD];
            end
            wire [SW-1:0] node [1:2*SIMD-1];  // a heap: node i = node 2i + node 2i+1, leaves SIMD..2*SIMD-1
            for (i = 0; i < SIMD; i = i + 1) begin : leaf
                assign node[SIMD + i] = m[i] ? xv[i] : {SW{1'b0}};
            end
            for (i = 1; i < SIMD; i = i + 1) begin : add
                assign node[i] = node[2*i] + node[2*i + 1];
            end
            assign sel[t] = node[1];
        end

        wire [PE*SW-1:0] sums;
        for (p = 0; p < PE; p = p + 1) begin : pe
            wire [SW-1:0] dot;
            if (WBITS == 1) begin : one
                assign dot = W_BIPOLAR != 0 ? {sel[p][SW-2:0], 1'b0} - sel[TREES] : sel[p];
            end else begin : planes
                wire [SW-1:0] part [0:WBITS];  // part[b]: the planes below b, weighted
                assign part[0] = {SW{1'b0}};
                for (b = 0; b < WBITS; b = b + 1) begin : weigh
                    wire [SW-1:0] shifted = sel[b*PE + p] << b;
                    if (W_SIGNED != 0 && b == WBITS - 1) begin : sign
                        assign part[b + 1] = part[b] - shifted;
                    end else begin : mag
                        assign part[b + 1] = part[b] + shifted;
                    end
                end
                assign dot = part[WBITS];
            end
            reg  [SW-1:0] acc;
            wire [SW-1:0] sum = (sf == 0 ? {SW{1'b0}} : acc) + dot;
            always @(posedge clk) if (fire) acc <= sum;
            assign sums[p*SW +: SW] = sum;
            if (THRESH == 0) begin : raw
                if (OB <= SW) begin : trim
                    assign out_data[p*OB +: OB] = sum[OB-1:0];
                end else begin : extend
                    assign out_data[p*OB +: OB] = {{(OB - SW){sum[SW-1]}}, sum};
                end
            end
        end

        if (THRESH != 0) begin : act
            onebit_thresh #(.PE(PE), .IW(SW), .IN_SIGNED(1), .TW(TW), .STAGES(STAGES), .NF(NF), .OB(OB),
                            .OUT_BIAS(OUT_BIAS), .SHARED(SHARED), .MEM(TMEM))
                thresh (.clk(clk), .fold(nf), .x(sums), .y(out_data));
            onebit_delay #(.D(STAGES)) valid_delay (.clk(clk), .rst(rst), .d(out_reserve), .q(out_valid));
        end else begin : noact
            assign out_valid = out_reserve;
        end
    endgenerate
endmodule
`default_nettype wire
