// MVAU (matrix-vector-activation unit): per step PE output channels x SIMD inputs, no multipliers.
// Per pixel NF*SF steps, nf-major (FINN's Matrix_Vector_Activate loop): the SF steps of fold nf = 0 read the
// input vector and keep it in a buffer for the later folds; every step with sf = SF-1 writes PE outputs.
// Weights are WBITS bit planes: weight word nf*SF + sf holds bit b of W[sf*SIMD + s][nf*PE + p] in bit
// b*PE*SIMD + p*SIMD + s (its columns in WG-bit memories, below). Each plane runs through its own adder trees of conditional adds.
// WBITS = 1: the bit is +1 / -1 if W_BIPOLAR, else 1 / 0. +1 / -1 weights take x or ~x = -x - 1 (one tree per
// PE, leaves signed), and the accumulator starts each output from the count of its -1 weights (CMEM, one
// word of PE counts per fold) to make up the -1s; with BIPOLAR inputs too, XNOR and popcount
// (w.x = 2 * #{w = x} - SIMD).
// WBITS = k >= 2: w = sum_b 2^b * w_b, the top plane weighted -2^(k-1) if W_SIGNED (two's complement), so
// w.x = sum_b +-2^b * (sum of the x whose weight has bit b set): shifted adds, one subtract.
//
// Pipeline (free-running: stalls only gate the accumulator): a step's weight word is read at the end of its
// cycle and registered again, its input registered twice, so both reach the trees from flip-flops two cycles
// later; the adder trees are balanced (SIMD padded to 2^L leaves with zeros), each level one bit wider than
// the one below, with a register after every second level and after the root; the per-PE dot product is
// registered once more: TREE_STAGES = ceil(L / 2) + 3 cycles (onebit's MVAU.tree_stages). The accumulator then adds the dot product
// of step t in cycle t + TREE_STAGES. Sums are SW-bit two's complement (every sum fits; partial sums may
// wrap). THRESH = 1: the sum goes through onebit_thresh and leaves TREE_STAGES + STAGES cycles after the
// writing step; THRESH = 0: the sum itself, TREE_STAGES cycles after it, OB bits.
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
    parameter integer TREE_STAGES = 3,  // must equal ceil(L / 2) + 3, L = clog2(SIMD): the RTL checks it
    parameter integer OB = 8,
    parameter integer OUT_BIAS = 0,
    parameter integer SHARED = 0,       // one threshold table for every channel (onebit_thresh)
    parameter integer WG = 36,         // weight memory column width (bits)
    parameter WMEM = "w",
    parameter TMEM = "thr",
    parameter CMEM = "c"                // BIPOLAR weights, other inputs: per output channel, its -1 weights
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

    // the weight word of the current step, read at the end of its cycle and registered once more: it meets the
    // step's input two cycles after the step. The word is split into columns of WG bits, one memory each
    // (WMEM_g<column>.mem, three digits), so a deep memory maps to block RAMs side by side, never to several
    // stacked behind a multiplexer.
    localparam integer LANES = PE * SIMD;
    localparam integer WWORD = WBITS * LANES;
    localparam integer NG = (WWORD + WG - 1) / WG;
    reg [WWORD-1:0] wq, wr;
    genvar g;
    generate
        for (g = 0; g < NG; g = g + 1) begin : wcol
            localparam integer GW = WWORD - g * WG < WG ? WWORD - g * WG : WG;
            localparam [7:0] G2 = 8'd48 + 8'(g / 100);
            localparam [7:0] G1 = 8'd48 + 8'((g / 10) % 10);
            localparam [7:0] G0 = 8'd48 + 8'(g % 10);
            reg [GW-1:0] wmem [0:STEPS-1];
            initial $readmemh({WMEM, "_g", G2, G1, G0, ".mem"}, wmem);
            always @(posedge clk) wq[g*WG +: GW] <= wmem[step];
        end
    endgenerate
    always @(posedge clk) wr <= wq;

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

        // leaves: LW bits, signed (TSIGNED) or not; XNOR: w ~^ x, one bit
        localparam integer XNOR = IN_BIPOLAR != 0 && WBITS == 1 && W_BIPOLAR != 0 ? 1 : 0;
        localparam integer TSIGNED = XNOR == 0 && (IN_SIGNED != 0 || IN_BIPOLAR != 0) ? 1 : 0;
        localparam integer LW = XNOR != 0 ? 1 : IN_BIPOLAR != 0 ? 2 : IW;
        // +1 / -1 weights on other inputs: the leaves are x or ~x, signed (one bit more for unsigned codes)
        localparam integer PM = WBITS == 1 && W_BIPOLAR != 0 && XNOR == 0 ? 1 : 0;
        localparam integer VW = PM != 0 && TSIGNED == 0 ? LW + 1 : LW;  // leaf width
        localparam integer VSIGNED = TSIGNED != 0 || PM != 0 ? 1 : 0;
        localparam integer L = SIMD > 1 ? $clog2(SIMD) : 0;
        localparam integer P2 = 1 << L;
        localparam integer RW = VW + L;  // root width
        localparam integer D = (L + 1) / 2 + 3;
        if (D != TREE_STAGES) begin : bad_tree_stages
            $error("onebit_mvau: TREE_STAGES differs from the adder tree's depth");
        end

        // the step's input, registered twice to meet its weights: the trees start from flip-flops
        reg [SIMD*IW-1:0] xq, xr;
        always @(posedge clk) begin
            xq <= x;
            xr <= xq;
        end

        wire [LW-1:0] xv [0:SIMD-1];
        for (s = 0; s < SIMD; s = s + 1) begin : elem
            wire [IW-1:0] e = xr[s*IW +: IW];
            if (IN_BIPOLAR != 0 && XNOR == 0) begin : bip
                assign xv[s] = {~e[0], 1'b1};  // -1 or +1
            end else begin : code
                assign xv[s] = e[LW-1:0];
            end
        end

        // root[b*PE + p]: the sum of the elements whose weight in lane p has bit b set (XNOR: the matches;
        // PM: x where the weight is +1, ~x where it is -1)
        localparam integer TREES = WBITS * PE;
        wire [RW-1:0] root [0:TREES-1];
        for (t = 0; t < TREES; t = t + 1) begin : tree
            wire [RW-1:0] node [1:2*P2-1];  // a heap: node i = node 2i + node 2i+1, leaves P2..2*P2-1
            for (i = 0; i < P2; i = i + 1) begin : leaf
                wire [VW-1:0] v;
                if (i >= SIMD) begin : pad
                    assign v = {VW{1'b0}};
                end else if (XNOR != 0) begin : match
                    assign v = ~(wr[t*SIMD + i] ^ xr[i*IW]);
                end else if (PM != 0) begin : pm
                    wire [VW-1:0] e = VW'(xv[i]);  // zero-extended where unsigned
                    assign v = wr[t*SIMD + i] ? e : ~e;
                end else begin : sel
                    assign v = wr[t*SIMD + i] ? xv[i] : {VW{1'b0}};
                end
                assign node[P2 + i] = RW'(v);
            end
            for (i = 1; i < P2; i = i + 1) begin : add
                localparam integer H = L + 1 - $clog2(i + 1);  // height above the leaves: 1 .. L
                localparam integer CW = VW + H - 1;             // the children's width
                wire [CW-1:0] ca = node[2*i][CW-1:0];
                wire [CW-1:0] cb = node[2*i + 1][CW-1:0];
                wire [CW:0] sum = (VSIGNED != 0 ? {ca[CW-1], ca} : {1'b0, ca}) +
                                  (VSIGNED != 0 ? {cb[CW-1], cb} : {1'b0, cb});
                if (H % 2 == 0 || H == L) begin : stage
                    reg [CW:0] r;
                    always @(posedge clk) r <= sum;
                    assign node[i] = RW'(r);
                end else begin : comb
                    assign node[i] = RW'(sum);
                end
            end
            assign root[t] = node[1];
        end

        // each root as an SW-bit two's complement number (modulo 2^SW: the final sums fit)
        wire [SW-1:0] wide [0:TREES-1];
        wire [SW-1:0] twice [0:TREES-1];  // 2 * wide
        for (t = 0; t < TREES; t = t + 1) begin : widen
            if (SW <= RW) begin : trim
                assign wide[t] = root[t][SW-1:0];
            end else begin : extend
                assign wide[t] = {{(SW - RW){VSIGNED != 0 ? root[t][RW-1] : 1'b0}}, root[t]};
            end
            assign twice[t] = {wide[t][SW-2:0], 1'b0};
        end

        // flags of the step whose dot product the accumulator takes: first (sf = 0), writes, fold, fired
        localparam integer GW = 3 + FW;
        reg [GW-1:0] flags [0:D-1];
        always @(posedge clk) begin
            flags[0] <= {fire && !rst, sf == 0, writes, nf};
        end
        for (i = 1; i < D; i = i + 1) begin : flag_pipe
            always @(posedge clk) flags[i] <= flags[i-1];
        end
        wire          acc_fire = flags[D-1][GW-1];
        wire          acc_first = flags[D-1][GW-2];
        wire [FW-1:0] acc_fold = flags[D-1][FW-1:0];

        // PM: the count of the -1 weights of each output channel of the fold the accumulator starts, read
        // a cycle ahead from the flags one stage earlier (D >= 3)
        wire [PE*SW-1:0] start;
        if (PM != 0) begin : minus
            reg [PE*SW-1:0] cmem [0:NF-1];
            initial $readmemh({CMEM, ".mem"}, cmem);
            reg [PE*SW-1:0] c_r;
            always @(posedge clk) c_r <= cmem[flags[D-2][FW-1:0]];
            assign start = c_r;
        end else begin : zero
            assign start = {(PE*SW){1'b0}};
        end

        wire [PE*SW-1:0] sums;
        for (p = 0; p < PE; p = p + 1) begin : pe
            wire [SW-1:0] dot;
            if (XNOR != 0) begin : xnor_pop
                assign dot = twice[p] - SW'(SIMD);
            end else if (WBITS == 1) begin : one
                assign dot = wide[p];
            end else begin : planes
                wire [SW-1:0] part [0:WBITS];  // part[b]: the planes below b, weighted
                assign part[0] = {SW{1'b0}};
                for (b = 0; b < WBITS; b = b + 1) begin : weigh
                    wire [SW-1:0] shifted = wide[b*PE + p] << b;
                    if (W_SIGNED != 0 && b == WBITS - 1) begin : sign
                        assign part[b + 1] = part[b] - shifted;
                    end else begin : mag
                        assign part[b + 1] = part[b] + shifted;
                    end
                end
                assign dot = part[WBITS];
            end
            reg  [SW-1:0] dot_r;
            always @(posedge clk) dot_r <= dot;
            reg  [SW-1:0] acc;
            wire [SW-1:0] sum = (acc_first ? start[p*SW +: SW] : acc) + dot_r;
            always @(posedge clk) if (acc_fire) acc <= sum;
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
                thresh (.clk(clk), .fold(acc_fold), .x(sums), .y(out_data));
            onebit_delay #(.D(D + STAGES)) valid_delay (.clk(clk), .rst(rst), .d(out_reserve), .q(out_valid));
        end else begin : noact
            onebit_delay #(.D(D)) valid_delay (.clk(clk), .rst(rst), .d(out_reserve), .q(out_valid));
        end
    endgenerate
endmodule
`default_nettype wire
