"""The weights that ship with redcore, trained by redcore itself, and their model cards.

redcore/weights/models.json lists every shipped model: name -> card (task, level, network, training data,
steps, time and hardware, the command that reproduces it, and its test-set figures beside the corrupted input
and the task's classical baseline).  The weight files are .npz files beside it (no pickle).
"""
import json
import os

from .tasks import covers

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
    """The name of the shipped model that restores (task, level), or None: a network trained for that very
    level where one ships (it ships only where it beats the blind one), else a blind network whose range or
    mix of levels covers it (card["covers"]: "0-75", "2,3,4", ...)."""
    known = sorted(cards().items())
    for name, card in known:
        if card["task"] == task and "covers" not in card and str(card["level"]) == str(level):
            return name
    for name, card in known:
        if card["task"] == task and "covers" in card and covers(task, card["covers"], level):
            return name
    return None


def levels_used(name, card):
    """The tested levels at which `redcore restore` uses this network (find gives it): a per-level network's
    own level, or those of a blind network's test levels that no per-level network takes."""
    tested = list(dict.fromkeys(t["level"] for t in card["tests"] if "level" in t)) if "covers" in card \
        else [card["level"]]
    return [level for level in tested if find(card["task"], level) == name]


def card_line(name, card):
    """One line of `redcore models`: name, task and level, network, data, steps, test figures."""
    tests = "; ".join(f"{t['set']}{' ' + str(t['level']) if 'level' in t else ''} {t['psnr']:.2f} dB"
                      + (f", {t['psnr_mask_known']:.2f} with the mask known" if "psnr_mask_known" in t else "")
                      + f" (input {t['input_psnr']:.2f}"
                      + (f", {t['baseline']} {t['baseline_psnr']:.2f}" if t.get("baseline") else "") + ")"
                      for t in card.get("tests", []))
    start = f" from {card['fine_tuned_from']}" if card.get("fine_tuned_from") else ""
    level = f"any level in {card['covers']}" if "covers" in card else card["level"]
    return (f"{name:28s} {card['task']} {level}: {card['network']}, {card['data']}, "
            f"{card['steps']} steps{start}" + (f"; {tests}" if tests else ""))


def card_text(name, card):
    """The whole model card of `redcore models NAME`, one field a line, its test figures as a small table."""
    lines = [f"{name}: {card['task']} {card['level']}" + (f" (one network for every level in {card['covers']})"
                                                           if "covers" in card else "")]
    skip = ("task", "level", "tests")
    width = max(len(k) for k in card)
    for key, value in card.items():
        if key in skip:
            continue
        if key == "train_seconds":
            value = f"{value:.0f} s ({value / 3600:.1f} h)"
        if key == "fine_tuned_from" and not value:
            value = "none (trained from scratch)"
        lines.append(f"  {key:{width}s}  {value}")
    if card.get("tests"):
        lines.append("  tests (PSNR dB / SSIM):")
        for t in card["tests"]:
            extra = "".join(f", {label} {t[key]:.2f}" for key, label in (("psnr_x8", "x8 ensemble"),
                                                                     ("psnr_mask_known", "mask known")) if key in t)
            base = f", {t['baseline']} {t['baseline_psnr']:.2f}" if t.get("baseline") else ""
            ssim = f" / {t['ssim']:.4f}" if "ssim" in t else ""
            at = f" at {t['level']}" if "level" in t else ""
            seed = f", corruption seed {t['seed']}" if "seed" in t else ""
            lines.append(f"    {t['set']}{at} ({t.get('images', '?')} images{seed}): {t['psnr']:.2f}{ssim}{extra}; "
                         f"input {t['input_psnr']:.2f}{base}")
    return "\n".join(lines)


def card_table(known):
    """The shipped models as one Markdown table: per test set, RED-Net (x8 ensemble) beside the corrupted input
    and the classical baseline, PSNR dB / SSIM."""
    def score(t, prefix):
        psnr, ssim = t.get(f"{prefix}psnr"), t.get(f"{prefix}ssim")
        return "" if psnr is None else f"{psnr:.2f}" + (f" / {ssim:.4f}" if ssim is not None else "")
    rows = ["| model | task | network, training | test set | RED-Net | x8 ensemble (or other) | input | "
            "classical baseline |",
            "|---|---|---|---|---|---|---|---|"]
    for name, card in sorted(known.items()):
        minutes = f", {card['train_seconds'] / 60:.0f} min" if card.get("train_seconds") else ""
        start = card.get("fine_tuned_from") or ""      # null in the card of a network trained from scratch
        if start:                          # a network that no longer ships keeps its name, out of code type
            start = f", from `{start}`" if start in known else f", from {start} (retired; in git history)"
        net = card["network"].split(",")[0] + ("-" + card["network"].split(",")[1].split()[0]
                                               if "," in card["network"] else "")
        for i, t in enumerate(card.get("tests", [])):
            first = ((f"`{name}`", f"{card['task']} {card['level']}", f"{net}; {card['steps']} steps{start}{minutes}")
                     if i == 0 else ("", "", ""))
            where = f"{t['set']} {t['level']}" if "level" in t else t["set"]
            base = (f"{t['baseline']} {score(t, 'baseline_')}" if t.get("baseline")
                    else "= input (bicubic)" if card["task"] == "sr" else "")
            ens = f"{t['psnr_x8']:.2f}" if "psnr_x8" in t else ""
            if "psnr_mask_known" in t:           # inpainting with the intact pixels kept (evaluate.py)
                masked = score({"psnr": t["psnr_mask_known"], "ssim": t.get("ssim_mask_known")}, "")
                ens += ("; " if ens else "") + f"mask known: {masked}"
            rows.append(f"| {' | '.join(first)} | {where} | **{score(t, '')}** | {ens} | {score(t, 'input_')} | "
                        f"{base} |")
    return "\n".join(rows)
