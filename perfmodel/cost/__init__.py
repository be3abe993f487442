"""The price of a step: its cost (step) from the kernels, collectives (comm), memory plan and fitted coefficients."""
