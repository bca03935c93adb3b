"""Export: QONNX export and lowering to a FINN-style dataflow graph (see design.md section 2)."""
