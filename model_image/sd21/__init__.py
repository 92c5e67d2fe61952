"""Stable Diffusion 2.1-base 512x512: compile, stage, serve, benchmark (neuron, cuda, cpu)."""
