"""An OCR model that reads for certain, for the tests of what serves it (server, predict, phone page): trained for one
epoch (tiny_ocr), then its weights set so that the detector's probability map is 1 everywhere (one box: the whole
picture) and the recognizer reads one character at every step (CTC collapses it to that character)."""

from __future__ import annotations

from pathlib import Path

import torch

from factory import api
from factory.api import session
from factory.models import load_model, read_metadata, resolve_model
from factory.tasks.ocr.formats import write_ocr


def reading_ocr_model(root: Path, home: Path, name: str = "reader", char: str = "A") -> None:
    """Import seeded scenes into the workspace `home`, train model `name` and make it read `char` over each picture."""
    api.import_dataset(write_ocr(root / "scenes", "icdar2015", count=16, seed=5, languages=("en",)), "signs", task="ocr",
                       home=home)
    api.train({"dataset": "signs", "model": "tiny_ocr", "epochs": 1, "name": name}, home=home)
    read_everything_as(home, name, char)


def read_everything_as(home: Path, name: str, char: str) -> None:
    """Set the trained model's weights so that it finds one box over the whole picture and reads `char` in it."""
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, name)
        model, meta = load_model(ws, row)
        path = ws.home / row["path"] / read_metadata(ws, row)["weights"]
    last = model.detector.prob_head[-2]
    head = model.recognizer.head
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(10.0)
        head.weight.zero_()
        head.bias.zero_()
        head.bias[meta["postprocessing"]["alphabet"].index(char) + 1] = 5.0
    torch.save(model.state_dict(), path)


