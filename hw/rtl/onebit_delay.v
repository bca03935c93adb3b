`default_nettype none
// A valid flag delayed by D cycles (D = 0: a wire).
module onebit_delay #(
    parameter integer D = 1
) (
    input  wire clk,
    input  wire rst,
    input  wire d,
    output wire q
);
    generate
        if (D == 0) begin : none
            assign q = d;
        end else begin : shift
            reg [D-1:0] r;
            always @(posedge clk) r <= rst ? {D{1'b0}} : D'({r, d});
            assign q = r[D-1];
        end
    endgenerate
endmodule
`default_nettype wire
