"""The paper's five restoration tasks: how each makes a (corrupted, clean) pair and how it is scored.

    task = redcore.tasks.get("sr")
    clean = task.prepare(clean, 3)                      # the protocol's crop (a multiple of the scale)
    corrupted, info = task.corrupt(clean, 3, rng)       # the network's input; info holds the mask or kernel

| task    | levels                               | images        | scored on (PSNR / SSIM)                 |
|---------|--------------------------------------|---------------|-----------------------------------------|
| denoise | sigma (8-bit scale), or "lo-hi" blind | as read       | the full image                          |
| sr      | 2, 3, 4                               | Y channel     | Y, `scale` border pixels shaved          |
| jpeg    | quality 1..100 (paper: 10 20 30 40)   | gray / Y      | the full image                          |
| deblur  | disk, gaussian, motion                | as read       | the full image                          |
| inpaint | text10, text20, scratches             | as read       | the full image                          |

Every corruption is a function of a clean image in [0, 1] and a seeded numpy Generator, so a pair is
reproducible from its seed.
"""
import math
from .blur import BLURS, blur, blur_kernel
from .inpaint import SCRATCH_CANVAS, overlay_text, scratches
from .jpeg import jpeg_compress
from .noise import SIGMA_DRAWS, add_blind_noise, add_gaussian_noise, check_sigma_draw, draw_sigmas
from .resize import bicubic_degrade, imresize, modcrop


class LevelMix:
    """Several levels of one task, one drawn per image: a network trained on a mix covers all of its levels
    without being told which (a "blind" network, the paper's single model for several levels, Tables 3, 8).
    Spelled "2,3,4", "disk,gaussian,motion" or, for JPEG qualities, "10-40"."""

    def __init__(self, levels, label):
        self.levels, self.label = tuple(levels), label

    def draw(self, rng):
        return self.levels[int(rng.integers(len(self.levels)))]

    def __contains__(self, level):
        return level in self.levels

    def __eq__(self, other):
        return isinstance(other, LevelMix) and self.levels == other.levels

    def __hash__(self):
        return hash(self.levels)

    def __repr__(self):
        return f"LevelMix({self.label})"


class Task:
    """A restoration task: its levels, the colour its images are read in, its corruption and scoring."""

    name = ""
    summary = ""
    color = "as read"          # "as read" (gray stays gray, colour stays colour) or "y" (the Y channel)
    levels = ()                # the paper's levels, for help texts and tables
    default_level = None
    default_set = ""           # the shared test set of the paper's table for this task

    def parse_level(self, level):
        """The canonical level for a user's spelling, or ValueError naming the choices."""
        raise NotImplementedError

    def prepare(self, clean, level):
        """The clean image the protocol scores against (SR crops to a multiple of the scale)."""
        return clean

    def corrupt(self, clean, level, rng):
        """(corrupted, info): the network's input for clean, and what a baseline may know (mask, kernel)."""
        raise NotImplementedError

    def shave(self, level):
        """Border pixels dropped before scoring."""
        return 0

    def context(self, level):
        """Pixels around a training patch that its corruption reads: the patch is cut from a crop this much
        larger on each side, corrupted there and trimmed, so that it is corrupted as the same pixels of a
        whole test image are, not as an image of its own with edges of its own."""
        return 0

    def one_level(self, level, rng):
        """A concrete level: `level` parsed, or one drawn from it where it is a mix."""
        level = self.parse_level(level)
        return level.draw(rng) if isinstance(level, LevelMix) else level

    @property
    def test_levels(self):
        """The levels a blind network is scored at: those of the tables it is compared with."""
        return self.levels

    def scored_levels(self, level):
        """The levels a network trained on `level` is scored at: each test level that a blind range or mix
        covers (its model card's table), else the level alone."""
        level = self.parse_level(level)
        if isinstance(level, (tuple, LevelMix)):
            return tuple(lv for lv in self.test_levels if covers(self, level, lv))
        return (level,)

    def each_level(self, level):
        """The levels `level` stands for: every level of a mix, else the parsed level alone."""
        level = self.parse_level(level)
        return level.levels if isinstance(level, LevelMix) else (level,)

    def _parse_mix(self, level, parse_one):
        """A LevelMix for "a,b,c" (each part parsed by parse_one), the level itself otherwise."""
        if isinstance(level, LevelMix):
            return level
        parts = [p.strip() for p in str(level).split(",")]
        if len(parts) == 1:
            return parse_one(level)
        levels = [parse_one(p) for p in parts]
        if len(set(levels)) != len(levels):
            raise self._bad_level(level)
        return LevelMix(levels, ",".join(str(v) for v in levels))

    def _bad_level(self, level):
        return ValueError(f"unknown level {str(level)!r} for task {self.name!r}: {self.level_help}")

    def _parse_int(self, level, prefix, valid):
        """An integer level that may be spelled with a prefix ("x3", "q20"), accepted when valid(value)."""
        try:
            value = int(str(level).lower().lstrip(prefix))
        except ValueError:
            raise self._bad_level(level) from None
        if not valid(value):
            raise self._bad_level(level)
        return value

    @property
    def level_help(self):
        return "levels are " + ", ".join(str(v) for v in self.levels)


class Denoise(Task):
    name, summary = "denoise", "additive white Gaussian noise (§5.2)"
    levels, default_level, default_set = (10, 30, 50, 70), 25, "Set12"
    test_levels = (10, 15, 25, 30, 50, 70)      # the paper's, and DnCNN's 15 and 25
    level_help = "a noise sigma on the 8-bit scale (paper: 10, 30, 50, 70) or a blind range like '0-55'"

    def __init__(self, sigma_draw="uniform"):
        """sigma_draw: how a blind range draws each training patch's sigma, uniform or log (draw_sigmas)."""
        self.sigma_draw = check_sigma_draw(sigma_draw)

    def parse_level(self, level):
        if isinstance(level, tuple) and len(level) == 2:       # already parsed: a blind range
            level = f"{level[0]}-{level[1]}"
        text = str(level).strip()
        try:
            if "-" in text.lstrip("-"):
                low, high = (float(v) for v in text.split("-", 1))
                if 0 <= low <= high < math.inf:
                    return (low, high)
            else:
                sigma = float(text)
                if 0 <= sigma < math.inf:
                    return int(sigma) if sigma == int(sigma) else sigma
        except ValueError:
            pass
        raise self._bad_level(level)

    def corrupt(self, clean, level, rng):
        level = self.parse_level(level)
        if isinstance(level, tuple):
            noisy, sigmas = add_blind_noise(clean[None], level, rng, self.sigma_draw)
            return noisy[0], {"sigma": float(sigmas[0])}
        return add_gaussian_noise(clean, level, rng), {"sigma": float(level)}


class SuperResolution(Task):
    name, summary = "sr", "bicubic down-sampling by MATLAB's imresize, input enlarged back (§5.3)"
    color, levels, default_level, default_set = "y", (2, 3, 4), 3, "Set5"
    level_help = "a scale factor: 2, 3 or 4, or a mix like '2,3,4' (one network for all)"

    def parse_level(self, level):
        return self._parse_mix(level, lambda one: self._parse_int(one, "x", lambda scale: scale in (2, 3, 4)))

    def prepare(self, clean, level):
        return modcrop(clean, math.lcm(*self.each_level(level)))     # a mix: a size every scale of it divides

    def corrupt(self, clean, level, rng):
        return bicubic_degrade(clean, self.one_level(level, rng)), {}

    def shave(self, level):
        return max(self.each_level(level))

    def context(self, level):
        # An enlarged pixel reads 2 small pixels either side, each of which reads 2 * scale large pixels
        # either side (the antialiased bicubic down-sampling): 4 * scale.  A multiple of every scale of the
        # mix, so that trimming it keeps the patch's size a multiple of each.
        scales = self.each_level(level)
        step = math.lcm(*scales)
        return -(-4 * max(scales) // step) * step


class Jpeg(Task):
    name, summary = "jpeg", "JPEG compression by Pillow's libjpeg (§5.4)"
    color, levels, default_level, default_set = "y", (10, 20, 30, 40), 10, "classic5"
    level_help = "a JPEG quality in 1..100 (paper: 10, 20, 30, 40), or a range like '10-40'"

    def parse_level(self, level):
        one = lambda q: self._parse_int(q, "q", lambda quality: 1 <= quality <= 100)   # noqa: E731
        text = str(level).strip()
        if not isinstance(level, LevelMix) and "-" in text.lstrip("-") and "," not in text:
            low, high = (one(v) for v in text.split("-", 1))        # "10-40": every quality in between
            if low >= high:
                raise self._bad_level(level)
            return LevelMix(range(low, high + 1), f"{low}-{high}")
        return self._parse_mix(level, one)

    def corrupt(self, clean, level, rng):
        return jpeg_compress(clean, self.one_level(level, rng)), {}


class Deblur(Task):
    name, summary = "deblur", "non-blind blur by MATLAB's fspecial kernels, rounded to 8 bits (§5.5)"
    levels, default_level, default_set = tuple(BLURS), "disk", "Set12"
    level_help = ("a blur: disk (radius 7), gaussian (25x25, sigma 1.6) or motion (15 pixels at 45 degrees), "
                  "or a mix like 'disk,gaussian,motion'")

    def parse_level(self, level):
        def one(text):
            name = str(text).lower()
            if name not in BLURS:
                raise self._bad_level(level)
            return name
        return self._parse_mix(level, one)

    def corrupt(self, clean, level, rng):
        level = self.one_level(level, rng)
        return blur(clean, level), {"kernel": blur_kernel(level)}

    def context(self, level):
        # A pixel of the blurred image reads the kernel's half-width around it (the widest kernel of a mix).
        return max(max(blur_kernel(name).shape) // 2 for name in self.each_level(level))


class Inpaint(Task):
    name, summary = "inpaint", "text of font size 10 or 20, or random scratches, over the image (§5.6)"
    levels, default_level, default_set = ("text10", "text20", "scratches"), "text20", "Set12"
    level_help = "text10, text20 (text of that font size) or scratches, or a mix like 'text10,text20,scratches'"

    def parse_level(self, level):
        def one(text):
            name = str(text).lower()
            name = {"10": "text10", "20": "text20", "scratch": "scratches"}.get(name, name)
            if name not in self.levels:
                raise self._bad_level(level)
            return name
        return self._parse_mix(level, one)

    def corrupt(self, clean, level, rng):
        level = self.one_level(level, rng)
        if level == "scratches":
            # A training patch gets a window of scratches drawn as on a test-size image (SCRATCH_CANVAS).
            h, w = clean.shape[:2]
            corrupted, mask = scratches(clean, rng, canvas=(max(h, SCRATCH_CANVAS), max(w, SCRATCH_CANVAS)))
        else:
            corrupted, mask = overlay_text(clean, rng, font_size=int(level[4:]))
        return corrupted, {"mask": mask}


TASKS = {t.name: t for t in (Denoise(), SuperResolution(), Jpeg(), Deblur(), Inpaint())}
ALIASES = {"denoising": "denoise", "super-resolution": "sr", "superresolution": "sr", "deblocking": "jpeg",
           "deblurring": "deblur", "inpainting": "inpaint"}


def level_label(level):
    """A parsed level as text for titles and file names: 25, 3, 10, disk, text20, 0-55 (a blind range),
    2,3,4 (a mix)."""
    if isinstance(level, LevelMix):
        return level.label
    return f"{level[0]:g}-{level[1]:g}" if isinstance(level, tuple) else str(level)


def covers(task, covered, level):
    """Whether a network trained on the level (or mix, or blind range) `covered` of `task` covers `level`."""
    task = get(task) if isinstance(task, str) else task
    covered, level = task.parse_level(covered), task.parse_level(level)
    if isinstance(covered, tuple):
        return not isinstance(level, (tuple, LevelMix)) and covered[0] <= float(level) <= covered[1]
    if isinstance(covered, LevelMix):
        return level in covered
    return covered == level


def get(name):
    """The task called `name` (denoise, sr, jpeg, deblur, inpaint), or ValueError listing them."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[key]


__all__ = ["Task", "TASKS", "LevelMix", "covers", "get", "level_label", "add_gaussian_noise", "add_blind_noise",
           "draw_sigmas", "SIGMA_DRAWS", "imresize", "modcrop", "bicubic_degrade", "jpeg_compress", "blur",
           "blur_kernel", "overlay_text", "scratches"]
