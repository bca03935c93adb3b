// GlobalAccPool: per frame P*CF reading steps (pixel-major, channel fold minor) that add each beat's PE lanes
// into the fold's accumulators, then CF steps that write the CF accumulator beats. PASS (no spatial axes:
// one output beat per input beat): every reading step writes its beat, widened, and the CF steps that
// follow write nothing. Pipeline depth 0. IN_TYPE: 0 unsigned, 1 signed, 2 BIPOLAR (0/1 is -1/+1).
`default_nettype none
module onebit_globalaccpool #(
    parameter integer PE = 1,
    parameter integer CF = 1,          // NumChannels / PE
    parameter integer P = 1,           // input beats per frame / CF
    parameter integer IW = 8,
    parameter integer IN_TYPE = 1,
    parameter integer OB = 10,         // output element bits: the sums' exact range
    parameter integer PASS = 0
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             in_valid,
    output wire             in_ready,
    input  wire [PE*IW-1:0] in_data,
    output wire             out_reserve,
    output wire             out_valid,
    input  wire             out_room,
    output wire [PE*OB-1:0] out_data
);
    localparam integer FW = CF > 1 ? $clog2(CF) : 1;
    localparam integer PW = P > 1 ? $clog2(P) : 1;

    function automatic [OB-1:0] ext(input [IW-1:0] x);
        if (IN_TYPE == 2) ext = x[0] ? OB'(1) : {OB{1'b1}};
        else if (IN_TYPE == 1) ext = OB'($signed(x));
        else ext = OB'(x);
    endfunction

    reg reading;                       // 1: the P*CF reading steps, 0: the CF steps after them
    reg [FW-1:0] fold;
    reg [PW-1:0] pix;
    reg [PE*OB-1:0] acc [0:CF-1];
    wire wr = PASS != 0 ? reading : !reading;
    wire fire = (in_valid || !reading) && (out_room || !wr);
    wire last_fold = fold == FW'(CF - 1);
    wire [PE*OB-1:0] x, sum;

    genvar l;
    generate
        for (l = 0; l < PE; l = l + 1) begin : lane
            assign x[l*OB +: OB] = ext(in_data[l*IW +: IW]);
            assign sum[l*OB +: OB] = (pix == 0 ? {OB{1'b0}} : acc[fold][l*OB +: OB]) + x[l*OB +: OB];
        end
    endgenerate

    assign in_ready = fire && reading;
    assign out_reserve = fire && wr;
    assign out_valid = fire && wr;
    assign out_data = PASS != 0 ? x : acc[fold];

    always @(posedge clk) begin
        if (PASS == 0 && fire && reading) acc[fold] <= sum;
        if (rst) begin
            reading <= 1'b1;
            fold <= 0;
            pix <= 0;
        end else if (fire) begin
            fold <= last_fold ? 0 : fold + 1'b1;
            if (reading && last_fold) begin
                pix <= pix == PW'(P - 1) ? 0 : pix + 1'b1;
                if (pix == PW'(P - 1)) reading <= 1'b0;
            end
            if (!reading && last_fold) reading <= 1'b1;
        end
    end
endmodule
`default_nettype wire
