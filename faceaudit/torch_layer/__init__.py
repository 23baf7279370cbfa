"""The thin PyTorch layer: diffusers generation and open_clip / dlib embedding.

Imported lazily (only by ``generate`` and ``embed``); it produces images and embeddings and
never computes statistics.
"""
