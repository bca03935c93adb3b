"""Hardware: RTL generation, Verilator co-simulation and open-toolchain synthesis (see design.md section 3)."""
