"""argparse types that refuse a bad number with one sentence: shared by `redcore` and examples/train.py."""
import argparse
import math


def number(kind, low, low_included=True):
    """An argparse type: a finite `kind` (int or float) >= low (or > low), with one sentence otherwise."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < low or (value == low and not low_included):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number {'>=' if low_included else '>'} {low}")
        return value
    parse.__name__ = kind.__name__      # argparse names the type in its messages
    return parse


positive_int, count, positive_float = number(int, 1), number(int, 0), number(float, 0, low_included=False)
