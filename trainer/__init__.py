"""trainer: the governed PyTorch trainer."""
