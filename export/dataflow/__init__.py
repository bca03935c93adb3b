"""The dataflow graph: FINN-style HW layers (ops/), conversion from the integer graph, folding, execution."""
