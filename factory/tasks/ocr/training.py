"""Training the OCR model with the engine: both networks in one loop (each step one detector batch of scenes and
one recognizer batch of crops, one optimizer over both), the engine's schedule, time budget, early stopping,
checkpoints and resume, and validation by end-to-end Hmean (word accuracy for a recognizer-only model).

- The detector sees each scene at a random scale (0.6-1.2 of `det_side` on its long side) in a `det_side` square
  patch, with its DB maps computed for the moved polygons (text cut by the patch's border is left out of the loss).
- The recognizer sees crops cut from the labelled polygons by perspective rectification (and once more with the
  corners moved a little, as a detector would give them), the dataset's own crops, and rendered text that shows
  every character of the dictionary at least `MIN_SEEN` times; each crop is as high as the recognizer reads
  (RecognizerKind.height: 32 px, PP-OCRv4's 48) at its own width, stretched 0.8-1.25x in training, and a batch is
  padded to its widest crop.
- A network started from PP-OCRv4's weights learns at its `PRETRAINED_LR_SCALE` of the run's rate.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from factory.datasets.images import load_rgb
from factory.tasks.base import IMAGENET_MEAN, IMAGENET_STD
from factory.tasks.ocr.architectures import RECOGNIZERS, RecognizerKind
from factory.tasks.ocr.datasets import MAX_TEXT
from factory.tasks.ocr.metrics import DONT_CARE, recognition_scores
from factory.tasks.ocr.model import db_loss, db_targets
from factory.tasks.ocr.pipeline import Reader, crop_width, score_scenes
from factory.tasks.ocr.postprocess import rectify
from factory.tasks.ocr.synthetic import crop as rendered_crop
from factory.training.engine import Trainer

MAX_REC_WIDTH = 640  # 160 time steps: more than twice the longest text the importer keeps (64 characters)
MIN_SEEN = 12  # each dictionary character is seen at least this often in the recognizer's training crops
MAX_RENDERED = 6000
SCALE_RANGE = (0.6, 1.2)
STRETCH_RANGE = (0.8, 1.25)
CORNER_JITTER = 0.08  # of the text's height: how far the second crop of a region moves its corners
GRAD_CLIP = 5.0
SCORE_LABEL = "OCR validation score"
VERTICAL = 1.5  # a crop this many times taller than wide is vertical text (PaddleOCR's ratio)
BN_SAMPLE = 256  # scenes and crops (each a seeded random sample) that BatchNorm statistics are averaged over
# PP-OCRv4's networks fine-tuned beside the run's 3e-3: the recognizer at 5e-4, the detector at 1e-3 (PaddleOCR's
# fine-tuning rate for it), so that their weights are kept rather than relearned
PRETRAINED_LR_SCALE = {"detector": 1 / 3, "recognizer": 1 / 6}


def rendered_texts(texts: list[str], alphabet: list[str], seed: int) -> list[str]:
    """Texts to render so that every character of `alphabet` appears at least MIN_SEEN times in `texts` plus
    these (at most MAX_RENDERED of them): 2-8 characters each, the missing occurrences shuffled together, so a
    text mixes rare characters with each other."""
    seen = Counter(c for t in texts for c in t)
    pool = [c for c in alphabet if not c.isspace() for _ in range(max(0, MIN_SEEN - seen[c]))]
    rng = random.Random(seed)
    rng.shuffle(pool)
    out: list[str] = []
    while pool and len(out) < MAX_RENDERED:
        length = rng.randint(2, 8)
        out.append("".join(pool[:length]))
        pool = pool[length:]
    return out


def upright(image: Image.Image) -> Image.Image:
    """A crop much taller than wide (vertical text) turned to read left to right, as `rectify` turns regions."""
    return image.transpose(Image.Transpose.ROTATE_90) if image.height >= VERTICAL * image.width else image


def crop_pixels(image: Image.Image, rec: RecognizerKind) -> torch.Tensor:
    """A crop as uint8 [3, H, W]: `rec.height` px high, its aspect ratio kept, W a multiple of `rec.stride` (at most
    MAX_REC_WIDTH)."""
    width = crop_width(image.width, image.height, rec.height, MAX_REC_WIDTH, rec.stride)
    pixels = np.asarray(image.convert("RGB").resize((width, rec.height), Image.Resampling.BILINEAR), np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def readable(text: str, known: set[str]) -> bool:
    """Whether the recognizer trains on `text`: not don't-care, within MAX_TEXT characters, all in the dictionary."""
    return text != DONT_CARE and len(text) <= MAX_TEXT and set(text) <= known


def _jittered(points: list, rng: random.Random) -> list:
    pts = np.asarray(points, np.float64)
    height = max(np.linalg.norm(pts[3] - pts[0]), np.linalg.norm(pts[2] - pts[1]), 1.0)
    return (pts + np.array([[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in pts]) * CORNER_JITTER * height).tolist()


class OcrData:
    """One split for training: scenes (long side at most `det_side`, regions scaled with them) and recognizer crops
    (uint8 [3, H, W] with their texts, as the recognizer kind `rec` reads them), plus the rendered crops when
    `render` is given."""

    def __init__(self, root: Path, entries: list[dict], alphabet: list[str], det_side: int, *, seed: int = 0,
                 recognizer: str = "crnn"):
        self.alphabet, self.det_side, self.seed = alphabet, det_side, seed
        self.rec = RECOGNIZERS.get(recognizer)
        height = self.rec.height
        known = set(alphabet)
        rng = random.Random(seed)
        self.scenes: list[tuple[Image.Image, list[dict]]] = []
        self.crops: list[torch.Tensor] = []
        self.texts: list[str] = []
        self.exact: list[bool] = []  # False: a jittered copy or a rendered crop (training only)
        self.rendered = 0
        for e in entries:
            image = load_rgb(root / e["file"])
            if "regions" not in e:
                if readable(e["text"], known):
                    self._add(upright(image), e["text"])
                continue
            for r in e["regions"]:
                if readable(r["text"], known):
                    self._add(rectify(image, r["points"], height), r["text"])
                    self._add(rectify(image, _jittered(r["points"], rng), height), r["text"], exact=False)
            scale = min(1.0, det_side / max(image.size))
            if scale < 1:
                image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                     Image.Resampling.BILINEAR)
            self.scenes.append((image, [{**r, "points": (np.asarray(r["points"]) * scale).tolist()} for r in e["regions"]]))

    def render(self, count: int) -> None:
        """Add `count` rendered crops of the texts `rendered_texts` gives for this data (training only)."""
        rng = random.Random(self.seed)
        for text in rendered_texts(self.texts, self.alphabet, self.seed)[:count]:
            image, _ = rendered_crop(rng, height=48, text=text)
            self._add(image, text, exact=False)
            self.rendered += 1

    def keep_exact(self) -> None:
        """Only the labelled crops as cut (validation reads what the data holds, nothing made up)."""
        kept = [i for i, exact in enumerate(self.exact) if exact]
        self.crops, self.texts, self.exact = [self.crops[i] for i in kept], [self.texts[i] for i in kept], [True] * len(kept)

    def _add(self, image: Image.Image, text: str, exact: bool = True) -> None:
        self.crops.append(crop_pixels(image, self.rec))
        self.texts.append(text)
        self.exact.append(exact)

    def __len__(self) -> int:
        return len(self.scenes) or len(self.crops)


def scene_sample(image: Image.Image, regions: list[dict], side: int, rng: np.random.Generator,
                 train: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One scene at a random scale in a `side` square (top-left when not training) and its DB maps."""
    scale = side / max(image.size) * (rng.uniform(*SCALE_RANGE) if train else 1.0)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    resized = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR), np.uint8)
    x0 = int(rng.integers(0, w - side + 1)) if train and w > side else 0  # crop when larger
    y0 = int(rng.integers(0, h - side + 1)) if train and h > side else 0
    dx = int(rng.integers(0, side - w + 1)) if train and w < side else 0  # place anywhere when smaller
    dy = int(rng.integers(0, side - h + 1)) if train and h < side else 0
    patch = np.zeros((side, side, 3), np.uint8)
    part = resized[y0:y0 + side, x0:x0 + side]
    patch[dy:dy + part.shape[0], dx:dx + part.shape[1]] = part
    moved = []
    for r in regions:
        pts = np.asarray(r["points"], np.float64) * scale - [x0 - dx, y0 - dy]
        inside = pts.min() >= 0 and pts[:, 0].max() <= side and pts[:, 1].max() <= side
        moved.append({"points": pts.tolist(), "text": r["text"] if inside else DONT_CARE})
    return patch, db_targets(moved, side, side)


class OcrTrainer(Trainer):
    """The engine's loop for the OCR model. The weights kept are those with the best `ocr_score` on validation: the
    mean of detection Hmean, 1 - normalized edit distance and end-to-end Hmean (of word accuracy and 1 - NED for a
    recognizer alone). End-to-end Hmean alone stays at 0 until the recognizer reads whole words, so a run kept its
    first epoch's weights; the mean rises from the first epochs on."""

    metric = "ocr_score"
    metric_label = SCORE_LABEL

    def __init__(self, cfg, model, train: OcrData, val: OcrData, preprocessing: dict, run_dir: Path, *,
                 lr_scales: dict[str, float] | None = None, **kwargs):
        self.lr_scales = lr_scales or {}  # read by param_groups, which the engine calls while it is set up
        super().__init__(cfg, model, train, val, preprocessing, run_dir, **kwargs)
        self.index = {c: i + 1 for i, c in enumerate(train.alphabet)}
        self.rec_batch = self.cfg.batch_size * train.rec.crops_per_scene
        self.has_detector = model.detector is not None and bool(train.scenes)
        det_steps = math.ceil(len(train.scenes) / self.cfg.batch_size) if self.has_detector else 0
        self.steps_per_epoch = max(1, det_steps, math.ceil(len(train.crops) / self.rec_batch))
        self.warmup_steps = int(cfg.warmup_epochs * self.steps_per_epoch)
        self._orders: dict[str, list[int]] = {}

    def param_groups(self) -> list[dict]:
        """Each network at its `lr_scales` of the run's rate (1 where not given)."""
        return [{"params": list(net.parameters()), "lr_scale": self.lr_scales.get(name, 1.0)}
                for name, net in self.model.networks().items()]

    # -- batches ------------------------------------------------------------------------------------
    def _next(self, kind: str, count: int, size: int, generator: torch.Generator) -> list[int]:
        """The next `size` indices of a reshuffled-when-used-up order over `count` items."""
        order = self._orders.setdefault(kind, [])
        while len(order) < size:
            order += torch.randperm(count, generator=generator).tolist()
        taken, self._orders[kind] = order[:size], order[size:]
        return self.group.shard(taken)  # a data-parallel rank's share

    def scene_batch(self, indices: list[int], generator: torch.Generator):
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        samples = [scene_sample(*self.train.scenes[i], self.train.det_side, rng) for i in indices]
        images = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2)
        maps = {k: torch.from_numpy(np.stack([s[1][k] for s in samples])) for k in samples[0][1]}
        return images, maps

    def epoch_batches(self, generator: torch.Generator):
        bs = self.cfg.batch_size
        for _ in range(self.steps_per_epoch):
            scenes = (self.scene_batch(self._next("scenes", len(self.train.scenes), bs, generator), generator)
                      if self.has_detector else None)
            crops = (crop_batch(self.train, self._next("crops", len(self.train.crops), self.rec_batch, generator),
                                     generator) if self.train.crops else None)
            yield scenes, crops, self.group.share(bs)  # this rank's share of the step

    # -- losses ---------------------------------------------------------------------------------------
    def ctc_loss(self, batch: torch.Tensor, widths: torch.Tensor, texts: list[str]) -> torch.Tensor:
        logits = self.model.recognizer(batch.to(self.device))
        log_probs = logits.float().log_softmax(2).transpose(0, 1)  # (T, N, C)
        targets = torch.tensor([self.index[c] for t in texts for c in t], dtype=torch.long)
        lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)
        # each crop's own time steps: its padding is not read (ocr-anchors: input lengths per crop)
        steps = (widths // self.train.rec.stride).clamp(max=log_probs.shape[0])
        return F.ctc_loss(log_probs, targets, steps, lengths, blank=0,
                          zero_infinity=True)

    def train_step(self, scenes, crops, generator: torch.Generator, start: float) -> float:
        self.scheduled_lr(start)
        loss = torch.zeros((), device=self.device)
        if scenes is not None:
            images, maps = scenes
            x = self.photometric(images.to(self.device).float() / 255, generator)
            loss = loss + db_loss(self.model.detector(((x - self.mean) / self.std)),
                                  {k: v.to(self.device) for k, v in maps.items()})
        if crops is not None:
            loss = loss + self.ctc_loss(*crops)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.group.average_gradients(self.optimizer)
        for net in self.model.networks().values():  # each its own norm: the detector's gradients must not shrink
            torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)  # the recognizer's steps (or the reverse)
        self.optimizer.step()
        self.state.step += 1
        return float(loss.detach())

    def photometric(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Brightness and contrast jitter per image (cfg.color_jitter), in [0, 1]."""
        n, j = len(x), self.cfg.color_jitter
        u = torch.rand(n, 2, generator=generator).to(x.device) * 2 - 1
        mean = x.mean((1, 2, 3), keepdim=True)
        return ((x - mean) * (1 + j * u[:, 0]).view(n, 1, 1, 1) + mean + j / 2 * u[:, 1].view(n, 1, 1, 1)).clamp(0, 1)

    # -- validation and batch norm -------------------------------------------------------------------
    def reader(self) -> Reader:
        return torch_reader(self.model, self.train.alphabet, self.train.det_side, self.train.rec, self.device)

    @torch.no_grad()
    def evaluate_metric(self) -> float:
        self.model.eval()
        if self.has_detector:
            if not self.val.scenes:
                return 0.0
            images = {i: image for i, (image, _) in enumerate(self.val.scenes)}
            truth = {i: regions for i, (_, regions) in enumerate(self.val.scenes)}
            out = score_scenes(self.reader(), images, truth)
            return float(np.mean([out["det"]["hmean"], out["rec"]["one_minus_ned"], out["e2e"]["hmean"]]))
        rec = read_crops(self.reader(), self.val)
        return float(np.mean([rec["word_accuracy"], rec["one_minus_ned"]]))

    @torch.no_grad()
    def calibrate_batchnorm(self) -> None:
        """BN statistics that match the weights, for both networks, before each validation."""
        exact_batchnorm(self.model, self.train, self.mean, self.std)

    def recalibrate(self, model: torch.nn.Module) -> None:
        exact_batchnorm(model, self.train, self.mean.cpu(), self.std.cpu())

    def chance_level(self) -> float:
        return 0.0

    def checkpoint_extra(self) -> dict:
        return {"orders": self._orders}  # where each shuffled pass is: a resumed run goes on with it

    def restore_extra(self, checkpoint: dict) -> None:
        self._orders = checkpoint.get("orders", {})


def read_crops(reader: Reader, data: OcrData) -> dict:
    """Recognition scores of `reader` on the crops of `data` (all 0 when there are none)."""
    if not data.crops:
        return {"word_accuracy": 0.0, "one_minus_ned": 0.0}
    images = [Image.fromarray(c.permute(1, 2, 0).numpy()) for c in data.crops]
    return recognition_scores(data.texts, [t["text"] for t in reader.recognize(images)])


def crop_batch(data: OcrData, indices: list[int], generator: torch.Generator | None = None):
    """Crops padded to the widest one, in [-1, 1], with their widths and texts; stretched 0.8-1.25x when a
    `generator` is given (training)."""
    height, crops = data.rec.height, []
    for i in indices:
        c = data.crops[i].float()
        if generator is not None:
            stretch = STRETCH_RANGE[0] + float(torch.rand(1, generator=generator)) * (STRETCH_RANGE[1] - STRETCH_RANGE[0])
            width = crop_width(c.shape[-1] * stretch, height, height, MAX_REC_WIDTH, data.rec.stride)
            c = F.interpolate(c[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        crops.append(c)
    widths = [c.shape[-1] for c in crops]
    batch = torch.zeros(len(crops), 3, height, max(widths))
    for j, c in enumerate(crops):
        batch[j, :, :, :c.shape[-1]] = (c / 255 - 0.5) / 0.5
    texts = [data.texts[i] for i in indices]
    return batch, torch.tensor(widths), texts


@torch.no_grad()
def exact_batchnorm(model, data: OcrData, mean: torch.Tensor, std: torch.Tensor) -> None:
    """BatchNorm running statistics as an average over batches like the training ones (`momentum` None): the
    detector's over a seeded sample of up to BN_SAMPLE scenes (8 at a time, at scale 1 in their squares), the
    recognizer's over as many crops (32 at a time, padded to the widest, as trained) where it has BatchNorms
    (PP-OCRv4's are folded or frozen)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    device = next(model.parameters()).device
    model.train()
    rng = np.random.default_rng(0)
    if model.detector is not None and data.scenes:
        chosen = sorted(rng.permutation(len(data.scenes))[:BN_SAMPLE].tolist())
        for first in range(0, len(chosen), 8):
            patches = [scene_sample(*data.scenes[i], data.det_side, rng, train=False)[0] for i in chosen[first:first + 8]]
            x = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).float().to(device) / 255
            model.detector((x - mean.to(device)) / std.to(device))
    chosen = sorted(rng.permutation(len(data.crops))[:BN_SAMPLE].tolist())
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.recognizer.modules()):
        chosen = []
    for first in range(0, len(chosen), 32):
        model.recognizer(crop_batch(data, chosen[first:first + 32])[0].to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def torch_reader(model, alphabet: list[str], det_side: int, rec: RecognizerKind, device: torch.device | str = "cpu",
                 db: dict | None = None) -> Reader:
    """A Reader running the PyTorch networks (eval mode) on `device`."""
    def run(net):
        def call(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return net(torch.from_numpy(x).to(device)).float().cpu().numpy()
        return call

    model.eval()
    detector = run(model.detector) if model.detector is not None else None
    return Reader(detector, run(model.recognizer), alphabet, det_side, rec.height, db, rec.stride)


def model_reader(model, meta: dict) -> Reader:
    """A Reader running a model version's PyTorch networks with its metadata's pre- and post-processing."""
    post = meta["postprocessing"]
    return torch_reader(model, post["alphabet"], meta["preprocessing"]["resize"][0],
                        RECOGNIZERS.get(post.get("recognizer", "crnn")), db=post.get("db"))


def ocr_preprocessing(det_side: int, recognizer: str = "crnn") -> dict:
    """The detector's (long side to `det_side`, sides multiples of 32, ImageNet mean and std) and the recognizer's
    (crops as high as its kind reads, at their own width, in [-1, 1]) preprocessing, as data."""
    rec = RECOGNIZERS.get(recognizer)
    return {"resize": [det_side, det_side], "resize_mode": "long_side_multiple_of_32", "interpolation": "bilinear",
            "color": "RGB", "layout": "NCHW", "scale": 1 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "recognizer": {"height": rec.height, "width_multiple": rec.stride, "max_width": MAX_REC_WIDTH, "mean": [0.5] * 3,
                           "std": [0.5] * 3, "pad_value": 0.0}}
