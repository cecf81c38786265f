"""The README's pictures: for every shipped model, a crop of a test image as corrupted | restored | clean.

    python bench/pictures.py                  # writes docs/<task>-<level>.png for each level a model restores

Each picture is a 128x128 crop (SR: of the high-resolution image) from the task's test set, corrupted with
seed 0 as the evaluation harness does, with the model's PSNR on the crop beside the corrupted input's.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import redcore  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from redcore import tasks, zoo  # noqa: E402
from redcore.data import load_test_set  # noqa: E402
from redcore.inference import restore_array  # noqa: E402
from redcore.metrics import psnr  # noqa: E402
from redcore.pictures import captioned_strip  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs")
PICK = {"denoise": ("Set12", "05", (60, 40)), "sr": ("Set5", "butterfly_GT", (60, 60)),
        "jpeg": ("classic5", "barbara", (80, 100)), "deblur": ("Set12", "08", (200, 200)),
        "inpaint": ("Set12", "03", (64, 64))}


def picture(name, card, level, size=128):
    task = tasks.get(card["task"])
    level = task.parse_level(level)
    set_name, image_name, (top, left) = PICK[task.name]
    names, images = load_test_set(set_name, mode="y" if task.color == "y" else "as read")
    clean = task.prepare(images[names.index(image_name)], level)
    corrupted, _ = task.corrupt(clean, level, np.random.default_rng([0, names.index(image_name)]))
    restored = restore_array(redcore.load(name), corrupted)
    crop = (slice(top, top + size), slice(left, left + size))
    panels = [np.clip(corrupted[crop], 0, 1), restored[crop], clean[crop]]
    labels = [f"input {psnr(panels[0], panels[2]):.2f} dB", f"RED-Net {psnr(panels[1], panels[2]):.2f} dB",
              "clean"]
    canvas = Image.fromarray(captioned_strip(panels, labels))
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{task.name}-{level}.png")
    canvas.save(path, optimize=True)
    return path


def main():
    shipped = zoo.cards()
    if not shipped:
        sys.exit("no shipped models: nothing to draw")
    for name, card in sorted(shipped.items()):
        for level in zoo.levels_used(name, card):        # the levels `redcore restore` gives this network
            print(f"{name}: {picture(name, card, level)}")


if __name__ == "__main__":
    main()
