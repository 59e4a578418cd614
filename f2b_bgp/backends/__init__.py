"""Backends write blackhole routes somewhere: the kernel (for FRR) or ExaBGP."""
