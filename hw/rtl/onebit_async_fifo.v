// A FIFO between two clock domains: Gray-code pointers, each crossing through two flip-flops (the classic
// Cummings design). 2^AW entries. w_free counts free entries in the write domain; it lags the reader by the
// synchroniser, so it never overstates the room.
`default_nettype none
module onebit_async_fifo #(
    parameter integer W = 8,
    parameter integer AW = 4
) (
    input  wire          wclk,
    input  wire          wrst,
    input  wire          w_valid,
    output wire          w_ready,
    input  wire [W-1:0]  w_data,
    output wire [AW:0]   w_free,
    input  wire          rclk,
    input  wire          rrst,
    output wire          r_valid,
    input  wire          r_ready,
    output wire [W-1:0]  r_data
);
    reg [W-1:0] mem [0:(1 << AW) - 1];
    reg [AW:0] wbin, wgray, rbin, rgray;
    (* async_reg = "true" *) reg [AW:0] rgray_w1, rgray_w2;
    (* async_reg = "true" *) reg [AW:0] wgray_r1, wgray_r2;

    function automatic [AW:0] gray(input [AW:0] b);
        gray = b ^ (b >> 1);
    endfunction
    function automatic [AW:0] binary(input [AW:0] g);
        integer i;
        binary[AW] = g[AW];
        for (i = AW - 1; i >= 0; i = i - 1) binary[i] = binary[i + 1] ^ g[i];
    endfunction

    wire push = w_valid && w_ready;
    wire [AW:0] wbin_next = wbin + (AW + 1)'(push);
    assign w_ready = wgray != {~rgray_w2[AW:AW-1], rgray_w2[AW-2:0]};
    assign w_free = (AW + 1)'(1 << AW) - (wbin - binary(rgray_w2));

    always @(posedge wclk) begin
        if (wrst) begin
            wbin <= 0;
            wgray <= 0;
            rgray_w1 <= 0;
            rgray_w2 <= 0;
        end else begin
            if (push) mem[wbin[AW-1:0]] <= w_data;
            wbin <= wbin_next;
            wgray <= gray(wbin_next);
            rgray_w1 <= rgray;
            rgray_w2 <= rgray_w1;
        end
    end

    wire pop = r_valid && r_ready;
    wire [AW:0] rbin_next = rbin + (AW + 1)'(pop);
    assign r_valid = rgray != wgray_r2;
    assign r_data = mem[rbin[AW-1:0]];

    always @(posedge rclk) begin
        if (rrst) begin
            rbin <= 0;
            rgray <= 0;
            wgray_r1 <= 0;
            wgray_r2 <= 0;
        end else begin
            rbin <= rbin_next;
            rgray <= gray(rbin_next);
            wgray_r1 <= wgray;
            wgray_r2 <= wgray_r1;
        end
    end
endmodule
`default_nettype wire
