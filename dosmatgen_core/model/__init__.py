"""The generative model: the denoiser network and the diffusion processes it is trained under."""
