"""The 8 symmetries of the square (identity, 3 rotations, and their mirror images): the paper's training
augmentation and its x8 self-ensemble at test time (§3.5)."""
import numpy as np


def dihedral(img, t, axes=(-2, -1)):
    """Transform t in 0..7 of an array over its two image axes: rotate by 90 t degrees, mirrored when t >= 4."""
    out = np.rot90(img, t % 4, axes=axes)
    return np.flip(out, axis=axes[1]) if t >= 4 else out


def inverse_dihedral(img, t, axes=(-2, -1)):
    """The transform that undoes dihedral(., t): un-mirror, then rotate back."""
    out = np.flip(img, axis=axes[1]) if t >= 4 else img
    return np.rot90(out, -(t % 4), axes=axes)
