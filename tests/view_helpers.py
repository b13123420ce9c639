"""Feeding a method views made elsewhere, so a test compiles the model and the loss, not the
augmentation: the test wraps the method (the library has no pre-made-views branch)."""
from __future__ import annotations

import jax


def given_views(batch, side, channels, seed=0):
    """A batch carrying two float views ``[B, 2, S, S, C]`` under ``"views"``."""
    return {"views": jax.random.uniform(jax.random.key(seed), (batch, 2, side, side, channels))}


def use_given_views(method):
    """Make ``method.make_views`` read ``batch["views"]`` ``[B, V, S, S, C]`` (V = the spec's
    view count, raw pixels in [0, 1]), split into the spec's groups in order and normalised as
    the method's own views are (``method.normalize``); returns ``method``."""
    def make_views(batch, step):
        del step
        views, out, v = batch["views"], {}, 0
        for group in method.spec.groups:
            out[group.name] = method.normalize(jax.numpy.moveaxis(views[:, v:v + group.count], 1, 0))
            v += group.count
        return out

    method.make_views = make_views
    return method
