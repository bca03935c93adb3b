// LabelSelect: the indices of the K largest of LF*PE scores, largest first, equal scores lower index first.
// Per vector: LF reading steps that insert a beat's PE scores (lane order) into a sorted top-K list, then
// K-1 steps writing the list's remaining labels; the first label leaves in the last reading step (from the
// list with that beat inserted). Pipeline depth 0. IN_TYPE: 0 unsigned, 1 signed, 2 BIPOLAR (0/1 is -1/+1).
`default_nettype none
module onebit_labelselect #(
    parameter integer PE = 1,
    parameter integer LF = 10,         // Labels / PE
    parameter integer K = 1,
    parameter integer IW = 8,
    parameter integer IN_TYPE = 1,
    parameter integer LW = 4,          // label index bits
    parameter integer OB = 8
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             in_valid,
    output wire             in_ready,
    input  wire [PE*IW-1:0] in_data,
    output wire             out_reserve,
    output wire             out_valid,
    input  wire             out_room,
    output wire [OB-1:0]    out_data
);
    localparam integer EW = IW + 1;    // scores as signed
    localparam integer FW = LF > 1 ? $clog2(LF) : 1;
    localparam integer TW = K > 2 ? $clog2(K - 1) : 1;

    function automatic [EW-1:0] ext(input [IW-1:0] x);
        if (IN_TYPE == 2) ext = x[0] ? EW'(1) : {EW{1'b1}};
        else if (IN_TYPE == 1) ext = EW'($signed(x));
        else ext = EW'(x);
    endfunction

    reg tail;                          // the K-1 writing steps after the reads
    reg [FW-1:0] fold;
    reg [TW-1:0] t;
    reg [LW-1:0] base;                 // label index of lane 0
    reg [K*EW-1:0] lv;                 // the list: scores, labels, occupied flags; entry 0 the largest
    reg [K*LW-1:0] li;
    reg [K-1:0] lk;

    // the list with this beat's lanes inserted in lane order (from empty at fold 0): an entry stays if it is
    // ahead of the new score (larger, or equal: its label is lower), else it takes the new score or its
    // predecessor; slots from the last down, so each slot's tests see the list before this lane's insertion
    reg [K*EW-1:0] nv;
    reg [K*LW-1:0] ni;
    reg [K-1:0] nk;
    reg [EW-1:0] xv;
    reg [LW-1:0] xi;
    reg here, ahead;
    integer s, i;
    always @* begin
        nv = lv;
        ni = li;
        nk = fold == 0 ? {K{1'b0}} : lk;
        for (s = 0; s < PE; s = s + 1) begin
            xv = ext(in_data[s*IW +: IW]);
            xi = base + LW'(s);
            for (i = K - 1; i > 0; i = i - 1) begin
                here = nk[i] && $signed(nv[i*EW +: EW]) >= $signed(xv);
                ahead = nk[i-1] && $signed(nv[(i-1)*EW +: EW]) >= $signed(xv);
                if (!here) begin
                    nv[i*EW +: EW] = ahead ? xv : nv[(i-1)*EW +: EW];
                    ni[i*LW +: LW] = ahead ? xi : ni[(i-1)*LW +: LW];
                    nk[i] = ahead || nk[i-1];
                end
            end
            if (!(nk[0] && $signed(nv[0 +: EW]) >= $signed(xv))) begin
                nv[0 +: EW] = xv;
                ni[0 +: LW] = xi;
                nk[0] = 1'b1;
            end
        end
    end

    wire last = fold == FW'(LF - 1);
    wire wr = tail || last;
    wire fire = (in_valid || tail) && (out_room || !wr);
    wire [LW-1:0] label;
    generate
        if (K > 1) begin : second
            assign label = tail ? li[LW +: LW] : ni[0 +: LW];
        end else begin : first
            assign label = ni[0 +: LW];
        end
    endgenerate
    assign in_ready = fire && !tail;
    assign out_reserve = fire && wr;
    assign out_valid = fire && wr;
    assign out_data = OB'(label);

    always @(posedge clk) begin
        if (rst) begin
            tail <= 1'b0;
            fold <= 0;
            t <= 0;
            base <= 0;
        end else if (fire) begin
            if (tail) begin
                li <= li >> LW;        // the next label moves to entry 1
                t <= t + 1'b1;
                if (t == TW'(K - 2)) tail <= 1'b0;
            end else begin
                lv <= nv;
                li <= ni;
                lk <= nk;
                fold <= last ? 0 : fold + 1'b1;
                base <= last ? 0 : base + LW'(PE);
                if (last && K > 1) begin
                    tail <= 1'b1;
                    t <= 0;
                end
            end
        end
    end
endmodule
`default_nettype wire
