// ElementwiseAdd / AddStreams (the residual join): every step reads a beat from both inputs and writes the
// PE lane sums, exact (the output type holds the whole range; no saturation), registered: pipeline depth 1
// (the inputs often come from block-RAM FIFOs, whose slow output leaves no room for an adder behind it).
// Element types (*_TYPE): 0 unsigned, 1 signed, 2 BIPOLAR (the bit 0/1 is -1/+1).
`default_nettype none
module onebit_add #(
    parameter integer PE = 1,
    parameter integer AW = 8,          // lhs element bits
    parameter integer A_TYPE = 1,
    parameter integer BW = 8,          // rhs element bits
    parameter integer B_TYPE = 1,
    parameter integer OB = 9
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             in0_valid,
    output wire             in0_ready,
    input  wire [PE*AW-1:0] in0_data,
    input  wire             in1_valid,
    output wire             in1_ready,
    input  wire [PE*BW-1:0] in1_data,
    output wire             out_reserve,
    output wire             out_valid,
    input  wire             out_room,
    output wire [PE*OB-1:0] out_data
);
    localparam integer MW = AW > BW ? AW : BW;
    localparam integer SW = (MW > OB ? MW : OB) + 2;

    function automatic [SW-1:0] ext_a(input [AW-1:0] x);
        if (A_TYPE == 2) ext_a = x[0] ? SW'(1) : {SW{1'b1}};
        else if (A_TYPE == 1) ext_a = SW'($signed(x));
        else ext_a = SW'(x);
    endfunction

    function automatic [SW-1:0] ext_b(input [BW-1:0] x);
        if (B_TYPE == 2) ext_b = x[0] ? SW'(1) : {SW{1'b1}};
        else if (B_TYPE == 1) ext_b = SW'($signed(x));
        else ext_b = SW'(x);
    endfunction

    wire fire = in0_valid && in1_valid && out_room;
    assign in0_ready = fire;
    assign in1_ready = fire;
    assign out_reserve = fire;
    reg sent;
    always @(posedge clk) sent <= !rst && fire;
    assign out_valid = sent;

    genvar l;
    generate
        for (l = 0; l < PE; l = l + 1) begin : lane
            wire [SW-1:0] s = ext_a(in0_data[l*AW +: AW]) + ext_b(in1_data[l*BW +: BW]);
            reg [OB-1:0] r;
            always @(posedge clk) r <= s[OB-1:0];
            assign out_data[l*OB +: OB] = r;
        end
    endgenerate
endmodule
`default_nettype wire
