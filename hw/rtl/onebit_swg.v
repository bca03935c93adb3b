// Sliding-window generator (ConvolutionInputGenerator): each KH x KW window of the input map leaves in
// (kh, kw, channel fold) order, one beat of SIMD channels per step.
//
// onebit_swg, the default style: FILL steps that only read (the line buffer fill), then per output row ROW
// steps writing the row's ROWW window beats from its first step while reading the next TAKE input beats (the
// last row TAKE_LAST) from its first step too, then TAIL idle steps. The input beats go round a circular
// buffer of D beats (reset to slot 0 each frame); every address is a counter stepped by constants modulo D
// (no multipliers). The buffer is read at the end of the step with the address register, so its address and
// output are registers and it maps to block RAM: a written beat leaves one cycle after its step (the op's
// pipeline depth 1). No step sends a beat it reads itself, so the read never needs the beat being written.
`default_nettype none
module onebit_swg #(
    parameter integer BW = 8,          // beat width: SIMD * element bits
    parameter integer KWCF = 1,        // beats in one tap row of a window: KW * channel folds
    parameter integer KH = 1,
    parameter integer OW = 1,
    parameter integer OH = 1,
    parameter integer FILL = 1,
    parameter integer ROW = 1,
    parameter integer ROWW = 1,        // OW * KH * KWCF
    parameter integer TAKE = 0,
    parameter integer TAKE_LAST = 0,
    parameter integer TAIL = 0,
    parameter integer D = 2,           // buffer depth in beats
    parameter integer TAPROW_STEP = 0, // W * folds      (mod D): next tap row
    parameter integer WIN_STEP = 0,    // SW * folds     (mod D): next window
    parameter integer ROW_STEP = 0     // SH * W * folds (mod D): next output row
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
    localparam integer AW = D > 1 ? $clog2(D) : 1;
    localparam integer JMAX = FILL > ROW ? (FILL > TAIL ? FILL : TAIL) : (ROW > TAIL ? ROW : TAIL);
    localparam integer JW = $clog2(JMAX + 1);
    localparam integer RW = $clog2(OH + 1);
    localparam integer NW = $clog2(KWCF + 1);
    localparam integer IW = $clog2(KH + 1);
    localparam integer XW = $clog2(OW + 1);
    localparam [1:0] P_FILL = 2'd0, P_ROWS = 2'd1, P_TAIL = 2'd2;

    function [AW-1:0] madd(input [AW-1:0] a, input [AW-1:0] c);
        reg [AW:0] s;
        begin
            s = {1'b0, a} + {1'b0, c};
            madd = s >= (AW + 1)'(D) ? AW'(s - (AW + 1)'(D)) : AW'(s);
        end
    endfunction

    reg [1:0] phase;
    reg [JW-1:0] j;
    reg [RW-1:0] r;
    wire last_row = r == RW'(OH - 1);
    wire rd = phase == P_FILL || (phase == P_ROWS && $signed(32'(j)) < (last_row ? TAKE_LAST : TAKE));
    wire wr = phase == P_ROWS && j < JW'(ROWW);
    wire fire = (!rd || in_valid) && (!wr || out_room);
    wire row_end = phase == P_ROWS && j == JW'(ROW - 1);
    wire frame_end = fire && ((row_end && last_row && TAIL == 0) || (phase == P_TAIL && j == JW'(TAIL - 1)));

    assign in_ready = fire && rd;
    assign out_reserve = fire && wr;
    reg sent;  // the last cycle's step wrote a beat: it leaves now
    assign out_valid = sent;

    always @(posedge clk) begin
        sent <= !rst && out_reserve;
        if (rst) begin
            phase <= P_FILL;
            j <= 0;
            r <= 0;
        end else if (fire) begin
            j <= j + 1'b1;
            case (phase)
                P_FILL: if (j == JW'(FILL - 1)) begin
                    phase <= P_ROWS;
                    j <= 0;
                end
                P_ROWS: if (row_end) begin
                    j <= 0;
                    r <= last_row ? 0 : r + 1'b1;
                    if (last_row) phase <= TAIL > 0 ? P_TAIL : P_FILL;
                end
                default: if (j == JW'(TAIL - 1)) begin
                    phase <= P_FILL;
                    j <= 0;
                end
            endcase
        end
    end

    // write side: input beat n of the frame goes to slot n mod D
    reg [BW-1:0] mem [0:D-1];
    reg [AW-1:0] wp;
    always @(posedge clk) begin
        if (in_ready) mem[wp] <= in_data;
        if (rst || frame_end) wp <= 0;
        else if (in_ready) wp <= madd(wp, AW'(1));
    end

    // read side: tap (n within its tap row, tap row i) of window x in the current output row
    reg [NW-1:0] n;
    reg [IW-1:0] i;
    reg [XW-1:0] x;
    reg [AW-1:0] addr, tap_row, win, row_base;
    reg [AW-1:0] addr_d, tap_row_d, win_d, row_base_d;
    always @* begin
        addr_d = addr;
        tap_row_d = tap_row;
        win_d = win;
        row_base_d = row_base;
        if (frame_end) begin
            addr_d = 0;
            tap_row_d = 0;
            win_d = 0;
            row_base_d = 0;
        end else if (out_reserve) begin
            if (n != NW'(KWCF - 1)) begin
                addr_d = madd(addr, AW'(1));
            end else if (i != IW'(KH - 1)) begin
                tap_row_d = madd(tap_row, AW'(TAPROW_STEP));
                addr_d = tap_row_d;
            end else if (x != XW'(OW - 1)) begin
                win_d = madd(win, AW'(WIN_STEP));
                tap_row_d = win_d;
                addr_d = win_d;
            end else begin
                row_base_d = madd(row_base, AW'(ROW_STEP));
                win_d = row_base_d;
                tap_row_d = row_base_d;
                addr_d = row_base_d;
            end
        end
    end

    reg [BW-1:0] q;  // mem[addr] of the last cycle's step
    assign out_data = q;
    always @(posedge clk) q <= mem[addr];
    always @(posedge clk) begin
        if (rst) begin
            n <= 0;
            i <= 0;
            x <= 0;
            addr <= 0;
            tap_row <= 0;
            win <= 0;
            row_base <= 0;
        end else begin
            addr <= addr_d;
            tap_row <= tap_row_d;
            win <= win_d;
            row_base <= row_base_d;
            if (out_reserve) begin
                n <= n == NW'(KWCF - 1) ? 0 : n + 1'b1;
                if (n == NW'(KWCF - 1)) begin
                    i <= i == IW'(KH - 1) ? 0 : i + 1'b1;
                    if (i == IW'(KH - 1)) x <= x == XW'(OW - 1) ? 0 : x + 1'b1;
                end
            end
        end
    end
endmodule

// onebit_swg_stream, for 1x1 kernels and the parallel-window style (one channel fold, KH*KW*SIMD channels
// out per beat): step k reads input beat k and writes the window whose last beat it is, the earlier taps
// from the last (KH-1)*W + KW-1 beats: KH-1 line delays of W beats in a memory (block RAM or LUT RAM) and
// KW-1 beats per row in registers, or all of them in a shift register for narrow maps; 2 idle steps end
// the frame.
module onebit_swg_stream #(
    parameter integer BW = 8,  // input beat width: SIMD * element bits
    parameter integer CF = 1,  // channel folds (1 unless the kernel is 1x1)
    parameter integer H = 1,
    parameter integer W = 1,
    parameter integer KH = 1,
    parameter integer KW = 1,
    parameter integer SH = 1,
    parameter integer SW = 1,
    parameter integer OH = 1,
    parameter integer OW = 1,
    parameter integer LINES_MIN_W = 4  // from this width on (KH > 1): the line delays in a memory
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               in_valid,
    output wire               in_ready,
    input  wire [BW-1:0]      in_data,
    output wire               out_reserve,
    output wire               out_valid,
    input  wire               out_room,
    output wire [KH*KW*BW-1:0] out_data
);
    localparam integer L = (KH - 1) * W + KW - 1;
    localparam integer YW = $clog2(H + 1);
    localparam integer XW = $clog2(W + 1);
    localparam integer FW = CF > 1 ? $clog2(CF) : 1;
    localparam integer PW = (SH > SW ? $clog2(SH + 1) : $clog2(SW + 1));
    // stride phases, 0 where a window ends: at row KH-1 + m*SH, column KW-1 + m*SW
    localparam integer RPH0 = (SH - (KH - 1) % SH) % SH;
    localparam integer CPH0 = (SW - (KW - 1) % SW) % SW;
    localparam integer YLAST = (OH - 1) * SH + KH - 1;
    localparam integer XLAST = (OW - 1) * SW + KW - 1;

    reg [YW-1:0] y;
    reg [XW-1:0] x;
    reg [FW-1:0] f;
    reg [PW-1:0] rph, cph;
    reg [1:0] idle;  // 0: reading; 1, 2: the frame's idle steps
    wire rd = idle == 0;
    // signed compares: a bound of 0 would make an unsigned one constant (lint)
    wire wr = rd && $signed(32'(y)) >= KH - 1 && $signed(32'(y)) <= YLAST && rph == 0
                 && $signed(32'(x)) >= KW - 1 && $signed(32'(x)) <= XLAST && cph == 0;
    wire fire = (!rd || in_valid) && (!wr || out_room);
    wire last_f = f == FW'(CF - 1);
    wire last_x = x == XW'(W - 1);
    wire last_y = y == YW'(H - 1);

    assign in_ready = fire && rd;
    assign out_reserve = fire && wr;
    assign out_valid = fire && wr;

    always @(posedge clk) begin
        if (rst) begin
            y <= 0;
            x <= 0;
            f <= 0;
            rph <= PW'(RPH0);
            cph <= PW'(CPH0);
            idle <= 0;
        end else if (fire) begin
            if (!rd) begin
                idle <= idle == 2'd2 ? 2'd0 : idle + 1'b1;
            end else begin
                f <= last_f ? 0 : f + 1'b1;
                if (last_f) begin
                    x <= last_x ? 0 : x + 1'b1;
                    cph <= last_x ? PW'(CPH0) : cph == PW'(SW - 1) ? 0 : cph + 1'b1;
                    if (last_x) begin
                        y <= last_y ? 0 : y + 1'b1;
                        rph <= last_y ? PW'(RPH0) : rph == PW'(SH - 1) ? 0 : rph + 1'b1;
                        if (last_y) idle <= 2'd1;
                    end
                end
            end
        end
    end

    genvar t, k, j;
    generate
        if (KH > 1 && W >= LINES_MIN_W) begin : lines
            // the KH-1 line delays of W beats in one memory of (KH-1)*BW bits x W read through a register
            // (block RAM or LUT RAM), and each row's last KW-1 beats in a shift register
            localparam integer LW = (KH - 1) * BW;
            localparam integer PAW = $clog2(W);
            reg [LW-1:0] lmem [0:W-1];
            reg [LW-1:0] lq;  // lmem[p] before this step's write: row k's beat k*W steps ago at (k-1)*BW
            reg [PAW-1:0] p;
            wire [PAW-1:0] p_next = p == PAW'(W - 1) ? 0 : p + 1'b1;
            wire [KH*BW-1:0] rows = {lq, in_data};  // row k: the beat read k*W steps ago, at k*BW
            always @(posedge clk) begin
                if (in_ready) lmem[p] <= rows[LW-1:0];
                lq <= lmem[in_ready ? p_next : p];
                if (rst) p <= 0;
                else if (in_ready) p <= p_next;
            end
            for (k = 0; k < KH; k = k + 1) begin : row
                wire [BW-1:0] now = rows[k*BW +: BW];
                if (KW > 1) begin : cols
                    reg [BW-1:0] csr [0:KW-2];  // csr[j-1]: row k's beat j steps ago
                    integer s;
                    always @(posedge clk) begin
                        if (in_ready) begin
                            csr[0] <= now;
                            for (s = 1; s < KW - 1; s = s + 1) csr[s] <= csr[s - 1];
                        end
                    end
                end
                for (j = 0; j < KW; j = j + 1) begin : col  // tap (KH-1-k, KW-1-j): k*W + j beats ago
                    if (j == 0) begin : now_tap
                        assign out_data[((KH - 1 - k) * KW + KW - 1) * BW +: BW] = now;
                    end else begin : past_tap
                        assign out_data[((KH - 1 - k) * KW + KW - 1 - j) * BW +: BW] = row[k].cols.csr[j - 1];
                    end
                end
            end
        end else if (L > 0) begin : delay
            reg [BW-1:0] sr [0:L-1];  // sr[d-1]: the beat read d steps ago
            integer s;
            always @(posedge clk) begin
                if (in_ready) begin
                    sr[0] <= in_data;
                    for (s = 1; s < L; s = s + 1) sr[s] <= sr[s - 1];
                end
            end
            for (t = 0; t < KH * KW; t = t + 1) begin : tap
                localparam integer DL = (KH - 1 - t / KW) * W + (KW - 1 - t % KW);
                if (DL == 0) begin : now
                    assign out_data[t*BW +: BW] = in_data;
                end else begin : past
                    assign out_data[t*BW +: BW] = sr[DL - 1];
                end
            end
        end else begin : direct
            assign out_data = in_data;
        end
    endgenerate
endmodule
`default_nettype wire
