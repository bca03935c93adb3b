// UART receiver and transmitter, 8 data bits, no parity, one stop bit, LSB first.
//
// BIT_Q8 is the bit time in 1/256ths of a clock (clock / baud * 256), so a baud rate that does not divide
// the clock (3 Mbaud from 25 MHz: 8.33 clocks) keeps its average bit time: each bit lasts floor or ceil of
// the exact time and the error never accumulates. The receiver samples each bit in its middle and needs at
// least 4 clocks per bit (BIT_Q8 >= 1024; the board build asks for 8).
`default_nettype none
module onebit_uart_rx #(
    parameter integer BIT_Q8 = 2048
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       rx,
    output reg        valid,       // one cycle: data holds a byte whose stop bit was 1
    output reg        frame_error, // one cycle: a byte whose stop bit was 0 (a break or a wrong baud rate)
    output reg  [7:0] data
);
    localparam integer TW = $clog2(BIT_Q8 + 256) + 1;
    /* verilator lint_off PROCASSINIT */
    reg [2:0] sync = 3'b111;       // two synchronising flip-flops, then the sampled line (idle high from power-on)
    /* verilator lint_on PROCASSINIT */
    reg busy;
    reg [3:0] n;                   // 0: start bit, 1..8: data bits, 9: stop bit
    reg [TW-1:0] t;                // time to the next sample, in 1/256ths of a clock
    wire line = sync[2];

    always @(posedge clk) sync <= {sync[1:0], rx};

    always @(posedge clk) begin
        valid <= 1'b0;
        frame_error <= 1'b0;
        if (rst) begin
            busy <= 1'b0;
        end else if (!busy) begin
            if (!line) begin       // a start bit's falling edge: its middle is half a bit later
                busy <= 1'b1;
                n <= 4'd0;
                t <= TW'(BIT_Q8 / 2);
            end
        end else if (t >= TW'(256)) begin
            t <= t - TW'(256);
        end else begin
            t <= t + TW'(BIT_Q8 - 256);
            n <= n + 4'd1;
            if (n == 4'd0) begin
                if (line) busy <= 1'b0; // the line went back high: a glitch, not a start bit
            end else if (n <= 4'd8) begin
                data <= {line, data[7:1]};
            end else begin
                busy <= 1'b0;
                valid <= line;
                frame_error <= !line;
            end
        end
    end
endmodule

module onebit_uart_tx #(
    parameter integer BIT_Q8 = 2048
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       valid,
    output wire       ready,       // the byte on data is taken in a cycle with valid && ready
    input  wire [7:0] data,
    output reg        tx
);
    localparam integer TW = $clog2(BIT_Q8 + 256) + 1;
    reg [9:0] shift;               // stop bit, data, start bit: sent from bit 0
    reg [3:0] left;                // bits still to send, the current one included
    reg [TW-1:0] t;                // time left in the current bit, in 1/256ths of a clock
    assign ready = left == 4'd0;

    always @(posedge clk) begin
        if (rst) begin
            left <= 4'd0;
            tx <= 1'b1;
        end else if (left == 4'd0) begin
            tx <= 1'b1;
            if (valid) begin
                shift <= {1'b1, data, 1'b0};
                left <= 4'd10;
                t <= TW'(BIT_Q8);
                tx <= 1'b0;
            end
        end else if (t > TW'(256)) begin
            t <= t - TW'(256);
        end else begin
            t <= t + TW'(BIT_Q8 - 256);
            shift <= shift >> 1;
            left <= left - 4'd1;
            tx <= left == 4'd1 ? 1'b1 : shift[1];
        end
    end
endmodule
`default_nettype wire
