"""The conditional GAN baseline's building blocks: its networks (networks.py) and objectives (losses.py).

The family that trains and draws with them is emodiff/generators/gan.py.
"""
