// The board-level core: a UART host link in the link clock domain and the accelerator (onebit_top) in its
// own clock domain, with two asynchronous FIFOs between them.
//
// Protocol (hw/link.py is the host's side; multi-byte fields little-endian; CRC-16/CCITT-FALSE over every
// byte after the sync byte):
//   request  A5 type seq len16 payload crc16    type 01 INFER (payload: one frame's input beats, IBB bytes
//                                               each), 02 LOOPBACK (up to 2^LOOP_AW bytes), 03 INFO (none)
//   reply    5A type seq len16 payload crc16    81: the frame's output beats (OBB bytes each), then the
//                                               accelerator cycles from its first input beat to its last
//                                               output beat (u32); 82: the loop-back payload; 83: INFO
//                                               bytes; EE NAK: one reason byte (1 CRC, 2 length, 3 type,
//                                               4 busy, 5 timeout inside a request)
// A frame's bytes go to a ring buffer and are committed only when its CRC is good, so the accelerator sees
// whole, correct frames only. Back-pressure is by window: the host keeps at most BUFFERS frames unanswered
// (INFO says how many), and the ring holds BUFFERS frames; a frame that finds no room gets NAK 4 and is
// dropped whole. Replies to INFER come in frame order; control replies (LOOPBACK, INFO, NAK) go between them.
`default_nettype none
module onebit_board #(
    parameter integer IW = 8,            // accelerator input beat bits
    parameter integer OW = 8,            // accelerator output beat bits
    parameter integer IN_BEATS = 64,     // input beats per frame
    parameter integer OUT_BEATS = 1,     // output beats per frame
    parameter integer BUFFERS = 2,       // frames the ring holds (the host's window)
    parameter integer RING_AW = 8,       // ring bytes: 2^RING_AW >= BUFFERS * frame bytes
    parameter integer LOOP_AW = 6,       // loop-back buffer: 2^LOOP_AW bytes
    parameter integer OUT_AW = 4,        // output FIFO: 2^OUT_AW beats
    parameter integer OUT_SLACK = 2,     // output beats the accelerator may still deliver after out_room falls
    parameter integer BIT_Q8 = 2048,     // UART bit time, 1/256ths of a link clock
    parameter integer IDLE_CLOCKS = 65536, // silence inside a request that abandons it
    parameter integer LINK_ON_PLL = 0,   // 1: clk_link is the PLL's output, so the link's reset waits for lock too
    parameter integer INFO_BYTES = 1,
    parameter [8*INFO_BYTES-1:0] INFO = 0
) (
    input  wire       clk_link,
    input  wire       clk_acc,
    input  wire       acc_locked,
    input  wire       uart_rx,
    output wire       uart_tx,
    output wire [3:0] status,            // heartbeat, busy, error (a NAK, stretched), accelerator clock locked
    output wire       busy
);
    localparam integer IBB = (IW + 7) / 8;
    localparam integer OBB = (OW + 7) / 8;
    localparam integer FRAME_BYTES = IBB * IN_BEATS;
    localparam integer REPLY_BYTES = OBB * OUT_BEATS + 4;
    localparam integer OWORD = 8 * OBB + 32;
    localparam [7:0] SYNC_REQ = 8'hA5, SYNC_REP = 8'h5A;
    localparam [7:0] T_INFER = 8'h01, T_LOOP = 8'h02, T_INFO = 8'h03, T_NAK = 8'hEE;
    localparam [7:0] R_CRC = 8'd1, R_LENGTH = 8'd2, R_TYPE = 8'd3, R_BUSY = 8'd4, R_TIMEOUT = 8'd5;

    function automatic [15:0] crc16(input [15:0] c, input [7:0] b);
        integer i;
        crc16 = c ^ {b, 8'h00};
        for (i = 0; i < 8; i = i + 1) crc16 = crc16[15] ? {crc16[14:0], 1'b0} ^ 16'h1021 : {crc16[14:0], 1'b0};
    endfunction

    // ---- resets: power-on in the link domain (registers with initial values: an FPGA loads them with its
    // configuration); the accelerator's also waits for its PLL, and so does the link's when it runs from it
    /* verilator lint_off PROCASSINIT */
    /* verilator lint_off SYNCASYNCNET */
    (* async_reg = "true" *) reg [1:0] locked_s = 2'b00;
    always @(posedge clk_link) locked_s <= {locked_s[0], acc_locked};
    reg [3:0] por = 4'd0;
    always @(posedge clk_link)
        if (LINK_ON_PLL != 0 && !locked_s[1]) por <= 4'd0;
        else if (por != 4'hF) por <= por + 4'd1;
    wire rst = por != 4'hF;
    (* async_reg = "true" *) reg [2:0] acc_rst_s = 3'b111;
    always @(posedge clk_acc or posedge rst)
        if (rst) acc_rst_s <= 3'b111;
        else acc_rst_s <= {acc_rst_s[1:0], !acc_locked};
    wire acc_rst = acc_rst_s[2];
    /* verilator lint_on SYNCASYNCNET */

    // ---- UART
    wire rx_valid, rx_frame_error;
    wire [7:0] rx_byte;
    onebit_uart_rx #(.BIT_Q8(BIT_Q8)) urx (.clk(clk_link), .rst(rst), .rx(uart_rx), .valid(rx_valid),
        .frame_error(rx_frame_error), .data(rx_byte));
    wire tx_valid, tx_ready;
    wire [7:0] tx_byte;
    onebit_uart_tx #(.BIT_Q8(BIT_Q8)) utx (.clk(clk_link), .rst(rst), .valid(tx_valid), .ready(tx_ready),
        .data(tx_byte), .tx(uart_tx));

    // ---- ring buffer of committed frames' bytes
    reg [7:0] ring [0:(1 << RING_AW) - 1];
    reg [RING_AW:0] spec_wp, commit_wp, rd_ptr;
    wire [RING_AW:0] ring_free = (RING_AW + 1)'(1 << RING_AW) - (spec_wp - rd_ptr);

    // ---- control replies waiting to be sent: {type, seq, reason}
    reg [23:0] ctl_q [0:3];
    reg [2:0] ctl_wp, ctl_rp;
    wire ctl_empty = ctl_wp == ctl_rp;
    wire ctl_full = ctl_wp == {~ctl_rp[2], ctl_rp[1:0]};
    // ---- sequence numbers of committed frames, in order
    reg [7:0] seq_q [0:7];
    reg [3:0] seq_wp, seq_rp;
    wire seq_empty = seq_wp == seq_rp;

    reg [7:0] inflight;  // committed frames whose reply has not yet been sent

    // ---- request parser
    localparam [2:0] P_SYNC = 0, P_TYPE = 1, P_SEQ = 2, P_LEN0 = 3, P_LEN1 = 4, P_PAY = 5, P_CRC0 = 6, P_CRC1 = 7;
    reg [2:0] ps;
    reg [7:0] p_type, p_seq, p_reason, p_crc_lo;
    reg [15:0] p_len, p_cnt, p_crc;
    reg [LOOP_AW:0] loop_len;
    reg [7:0] loop_mem [0:(1 << LOOP_AW) - 1];
    reg [$clog2(IDLE_CLOCKS + 1)-1:0] idle;
    reg ctl_push;
    reg [23:0] ctl_entry;
    wire [15:0] len_now = {rx_byte, p_len[7:0]};
    wire [15:0] crc_next = crc16(p_crc, rx_byte);

    function automatic [7:0] check_length(input [7:0] ty, input [15:0] len);
        if (ty == T_INFER) check_length = len != 16'(FRAME_BYTES) ? R_LENGTH :
                                          ring_free < (RING_AW + 1)'(FRAME_BYTES) || inflight >= 8'(BUFFERS) ?
                                          R_BUSY : 8'd0;
        else if (ty == T_LOOP) check_length = len > 16'(1 << LOOP_AW) ? R_LENGTH : 8'd0;
        else if (ty == T_INFO) check_length = len != 16'd0 ? R_LENGTH : 8'd0;
        else check_length = R_TYPE;
    endfunction

    always @(posedge clk_link) begin
        ctl_push <= 1'b0;
        if (rst) begin
            ps <= P_SYNC;
            spec_wp <= 0;
            commit_wp <= 0;
            seq_wp <= 0;
            idle <= 0;
        end else if (rx_valid) begin
            idle <= 0;
            p_crc <= crc_next;
            case (ps)
                P_SYNC: begin
                    if (rx_byte == SYNC_REQ) ps <= P_TYPE;
                    p_crc <= 16'hFFFF;
                end
                P_TYPE: begin p_type <= rx_byte; ps <= P_SEQ; end
                P_SEQ: begin p_seq <= rx_byte; ps <= P_LEN0; end
                P_LEN0: begin p_len[7:0] <= rx_byte; ps <= P_LEN1; end
                P_LEN1: begin
                    p_len <= len_now;
                    p_reason <= check_length(p_type, len_now);
                    p_cnt <= 16'd0;
                    ps <= len_now == 16'd0 ? P_CRC0 : P_PAY;
                end
                P_PAY: begin
                    if (p_reason == 8'd0 && p_type == T_INFER) begin
                        ring[spec_wp[RING_AW-1:0]] <= rx_byte;
                        spec_wp <= spec_wp + 1'b1;
                    end
                    if (p_reason == 8'd0 && p_type == T_LOOP) loop_mem[p_cnt[LOOP_AW-1:0]] <= rx_byte;
                    p_cnt <= p_cnt + 16'd1;
                    if (p_cnt == p_len - 16'd1) ps <= P_CRC0;
                end
                P_CRC0: begin p_crc_lo <= rx_byte; p_crc <= p_crc; ps <= P_CRC1; end
                default: begin  // P_CRC1
                    ps <= P_SYNC;
                    if ({rx_byte, p_crc_lo} != p_crc || p_reason != 8'd0) begin
                        spec_wp <= commit_wp;
                        ctl_push <= 1'b1;
                        ctl_entry <= {T_NAK, p_seq, {rx_byte, p_crc_lo} != p_crc ? R_CRC : p_reason};
                    end else if (p_type == T_INFER) begin
                        commit_wp <= spec_wp;
                        seq_q[seq_wp[2:0]] <= p_seq;
                        seq_wp <= seq_wp + 4'd1;
                    end else begin
                        if (p_type == T_LOOP) loop_len <= p_len[LOOP_AW:0];
                        ctl_push <= 1'b1;
                        ctl_entry <= {p_type | 8'h80, p_seq, 8'd0};
                    end
                end
            endcase
        end else if (ps != P_SYNC) begin
            if (idle == IDLE_CLOCKS[$bits(idle)-1:0]) begin
                ps <= P_SYNC;
                spec_wp <= commit_wp;
                idle <= 0;
                ctl_push <= 1'b1;
                ctl_entry <= {T_NAK, p_seq, R_TIMEOUT};
            end else begin
                idle <= idle + 1'b1;
            end
        end
    end

    // ---- feeder: committed bytes -> input beats -> the accelerator's clock domain
    reg [7:0] ring_q;
    reg [8*IBB+7:0] beat;              // the beat in its top 8*IBB bits once IBB bytes are in
    localparam integer BBW = $clog2(IBB + 1);
    reg [BBW-1:0] beat_bytes;
    reg beat_full;
    wire in_w_ready;
    wire push_beat = beat_full && in_w_ready;
    wire take = rd_ptr != commit_wp && (!beat_full || push_beat);
    wire [RING_AW:0] rd_next = rd_ptr + (RING_AW + 1)'(take);
    always @(posedge clk_link) ring_q <= ring[rd_next[RING_AW-1:0]];
    always @(posedge clk_link) begin
        if (rst) begin
            rd_ptr <= 0;
            beat_bytes <= 0;
            beat_full <= 1'b0;
        end else begin
            rd_ptr <= rd_next;
            if (take) begin
                beat <= {ring_q, beat[8*IBB+7:8]};
                beat_bytes <= beat_bytes == BBW'(IBB - 1) ? 0 : beat_bytes + 1'b1;
            end
            if (take && beat_bytes == BBW'(IBB - 1)) beat_full <= 1'b1;
            else if (push_beat) beat_full <= 1'b0;
        end
    end

    // ---- accelerator domain
    wire acc_in_valid, acc_in_ready, acc_out_valid;
    wire [IW-1:0] acc_in_data;
    wire [OW-1:0] acc_out_data;
    wire [OUT_AW:0] out_free;
    onebit_async_fifo #(.W(IW), .AW(4)) in_fifo (.wclk(clk_link), .wrst(rst), .w_valid(beat_full),
        .w_ready(in_w_ready), .w_data(beat[8+:IW]), .w_free(),
        .rclk(clk_acc), .rrst(acc_rst), .r_valid(acc_in_valid), .r_ready(acc_in_ready), .r_data(acc_in_data));
    onebit_top acc (.clk(clk_acc), .rst(acc_rst), .in_valid(acc_in_valid), .in_ready(acc_in_ready),
        .in_data(acc_in_data), .out_valid(acc_out_valid), .out_room(out_free > (OUT_AW + 1)'(OUT_SLACK)),
        .out_data(acc_out_data));

    // per frame: the cycle its first input beat went in, kept until its last output beat leaves
    reg [31:0] cycle;
    reg [31:0] start_q [0:7];
    reg [2:0] start_wp, start_rp;
    localparam integer IBW = $clog2(IN_BEATS + 1), OBW = $clog2(OUT_BEATS + 1);
    reg [IBW-1:0] in_beat;
    reg [OBW-1:0] out_beat;
    wire in_fire = acc_in_valid && acc_in_ready;
    wire last_out = out_beat == OBW'(OUT_BEATS - 1);
    always @(posedge clk_acc) begin
        if (acc_rst) begin
            cycle <= 0;
            start_wp <= 0;
            start_rp <= 0;
            in_beat <= 0;
            out_beat <= 0;
        end else begin
            cycle <= cycle + 1;
            if (in_fire) begin
                if (in_beat == 0) begin
                    start_q[start_wp] <= cycle;
                    start_wp <= start_wp + 1'b1;
                end
                in_beat <= in_beat == IBW'(IN_BEATS - 1) ? 0 : in_beat + 1'b1;
            end
            if (acc_out_valid) begin
                out_beat <= last_out ? 0 : out_beat + 1'b1;
                if (last_out) start_rp <= start_rp + 1'b1;
            end
        end
    end
    wire [31:0] latency = last_out ? cycle - start_q[start_rp] + 1 : 32'd0;
    wire [OWORD-1:0] out_word = {latency, (8 * OBB)'(acc_out_data)};
    wire out_valid;
    wire out_pop;
    wire [OWORD-1:0] out_head;
    onebit_async_fifo #(.W(OWORD), .AW(OUT_AW)) out_fifo (.wclk(clk_acc), .wrst(acc_rst), .w_valid(acc_out_valid),
        .w_ready(), .w_data(out_word), .w_free(out_free),
        .rclk(clk_link), .rrst(rst), .r_valid(out_valid), .r_ready(out_pop), .r_data(out_head));

    // ---- reply transmitter
    localparam [2:0] X_IDLE = 0, X_SYNC = 1, X_TYPE = 2, X_SEQ = 3, X_LEN0 = 4, X_LEN1 = 5, X_PAY = 6, X_CRC = 7;
    reg [2:0] xs;
    reg x_crc_hi;
    reg [7:0] x_type, x_seq, x_reason;
    reg [15:0] x_len, x_cnt, x_crc;
    localparam integer XBW = $clog2(OBB + 5);
    reg [XBW-1:0] x_byte;              // byte of the current output beat
    reg [OBW-1:0] x_beat;
    reg [7:0] loop_q;
    reg [7:0] pay;
    reg pay_ok;
    always @(posedge clk_link) loop_q <= loop_mem[x_cnt[LOOP_AW-1:0]];
    wire x_last_beat = x_beat == OBW'(OUT_BEATS - 1);
    always @* begin
        pay_ok = 1'b1;
        pay = 8'd0;
        case (x_type)
            T_INFER | 8'h80: begin pay_ok = out_valid; pay = out_head[8 * x_byte +: 8]; end
            T_LOOP | 8'h80: pay = loop_q;
            T_INFO | 8'h80: pay = INFO[8 * x_cnt +: 8];
            default: pay = x_reason;
        endcase
    end
    reg x_loop_wait;  // the loop buffer's registered read needs a cycle after each address change
    wire [7:0] x_out = xs == X_SYNC ? SYNC_REP : xs == X_TYPE ? x_type : xs == X_SEQ ? x_seq :
                       xs == X_LEN0 ? x_len[7:0] : xs == X_LEN1 ? x_len[15:8] : xs == X_PAY ? pay :
                       x_crc_hi ? x_crc[15:8] : x_crc[7:0];
    assign tx_valid = xs != X_IDLE && (xs != X_PAY || (pay_ok && !x_loop_wait));
    assign tx_byte = x_out;
    wire x_fire = tx_valid && tx_ready;
    wire infer_pay = x_type == (T_INFER | 8'h80);
    assign out_pop = xs == X_PAY && infer_pay && x_fire &&
                     (x_last_beat ? x_byte == XBW'(OBB + 3) : x_byte == XBW'(OBB - 1));
    reg [23:0] ctl_head;
    always @* ctl_head = ctl_q[ctl_rp[1:0]];
    always @(posedge clk_link) begin
        if (rst) begin
            xs <= X_IDLE;
            ctl_wp <= 0;
            ctl_rp <= 0;
            seq_rp <= 0;
            inflight <= 0;
            x_loop_wait <= 1'b0;
        end else begin
            if (ctl_push && !ctl_full) begin
                ctl_q[ctl_wp[1:0]] <= ctl_entry;
                ctl_wp <= ctl_wp + 1'b1;
            end
            x_loop_wait <= 1'b0;
            case (xs)
                X_IDLE: begin
                    x_crc <= 16'hFFFF;
                    x_crc_hi <= 1'b0;
                    x_cnt <= 0;
                    x_byte <= 0;
                    x_beat <= 0;
                    if (!seq_empty && out_valid) begin
                        x_type <= T_INFER | 8'h80;
                        x_seq <= seq_q[seq_rp[2:0]];
                        seq_rp <= seq_rp + 4'd1;
                        x_len <= 16'(REPLY_BYTES);
                        xs <= X_SYNC;
                    end else if (!ctl_empty) begin
                        x_type <= ctl_head[23:16];
                        x_seq <= ctl_head[15:8];
                        x_reason <= ctl_head[7:0];
                        x_len <= ctl_head[23:16] == T_NAK ? 16'd1 :
                                 ctl_head[23:16] == (T_INFO | 8'h80) ? 16'(INFO_BYTES) : 16'(loop_len);
                        ctl_rp <= ctl_rp + 1'b1;
                        x_loop_wait <= 1'b1;
                        xs <= X_SYNC;
                    end
                end
                default: if (x_fire) begin
                    if (xs != X_SYNC && xs != X_CRC) x_crc <= crc16(x_crc, x_out);
                    case (xs)
                        X_SYNC: xs <= X_TYPE;
                        X_TYPE: xs <= X_SEQ;
                        X_SEQ: xs <= X_LEN0;
                        X_LEN0: xs <= X_LEN1;
                        X_LEN1: xs <= x_len == 0 ? X_CRC : X_PAY;
                        X_PAY: begin
                            x_cnt <= x_cnt + 16'd1;
                            x_loop_wait <= 1'b1;
                            if (infer_pay) begin
                                if (out_pop) begin
                                    x_byte <= 0;
                                    x_beat <= x_beat + 1'b1;
                                end else begin
                                    x_byte <= x_byte + 1'b1;
                                end
                            end
                            if (x_cnt == x_len - 16'd1) xs <= X_CRC;
                        end
                        default: begin  // X_CRC: low byte, then high byte
                            x_crc_hi <= 1'b1;
                            if (x_crc_hi) begin
                                xs <= X_IDLE;
                                if (infer_pay) inflight <= inflight - 8'd1;
                            end
                        end
                    endcase
                end
            endcase
            if (ps == P_CRC1 && rx_valid && {rx_byte, p_crc_lo} == p_crc && p_reason == 8'd0 && p_type == T_INFER)
                inflight <= inflight + 8'd1 - 8'(xs == X_CRC && x_fire && x_crc_hi && infer_pay);
        end
    end

    // ---- status
    reg [23:0] beat_count = 24'd0;
    reg [21:0] error_hold;
    always @(posedge clk_link) begin
        beat_count <= beat_count + 1'b1;
        if (rst) error_hold <= 0;
        else if (ctl_push && ctl_entry[23:16] == T_NAK) error_hold <= {22{1'b1}};
        else if (error_hold != 0) error_hold <= error_hold - 1'b1;
    end
    assign busy = ps != P_SYNC || xs != X_IDLE || inflight != 0 || !ctl_empty || spec_wp != rd_ptr;
    assign status = {locked_s[1], error_hold != 0, busy, beat_count[23]};
    /* verilator lint_on PROCASSINIT */
    wire unused = &{1'b0, rx_frame_error, x_crc_hi};
endmodule
`default_nettype wire
