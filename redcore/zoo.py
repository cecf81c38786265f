"""The weights that ship with redcore, trained by redcore itself, and their model cards.

redcore/weights/models.json lists every shipped model: name -> card (task, level, network, training data,
steps, time and hardware, the command that reproduces it, and its test-set figures beside the corrupted input
and the task's classical baseline).  The weight files are .npz files beside it (no pickle).
"""
import json
import os

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
INDEX = os.path.join(WEIGHTS_DIR, "models.json")


def cards():
    """name -> model card of every shipped model (empty when none ships)."""
    if not os.path.isfile(INDEX):
        return {}
    with open(INDEX) as f:
        return json.load(f)


def path_of(name):
    """The weight file of a shipped model, or ValueError naming the shipped ones."""
    known = cards()
    if name not in known:
        choices = ", ".join(sorted(known)) or "none yet"
        raise ValueError(f"unknown model {name!r}: the shipped models are {choices} (or give the path of a .npz "
                         "file saved by REDNet.save)")
    return os.path.join(WEIGHTS_DIR, known[name]["file"])


def find(task, level):
    """The name of the shipped model for (task, level), or None."""
    for name, card in sorted(cards().items()):
        if card["task"] == task and str(card["level"]) == str(level):
            return name
    return None


def card_line(name, card):
    """One line of `redcore models`: name, task and level, network, data, steps, test figures."""
    tests = "; ".join(f"{t['set']} {t['psnr']:.2f} dB (input {t['input_psnr']:.2f}"
                      + (f", {t['baseline']} {t['baseline_psnr']:.2f}" if t.get("baseline") else "") + ")"
                      for t in card.get("tests", []))
    start = f" from {card['fine_tuned_from']}" if card.get("fine_tuned_from") else ""
    return (f"{name:28s} {card['task']} {card['level']}: {card['network']}, {card['data']}, "
            f"{card['steps']} steps{start}" + (f"; {tests}" if tests else ""))
