"""OCR (text detection + recognition): a DB text detector and a CTC recognizer as one model version, its dataset
layouts, training, ICDAR 2015 metrics and NumPy post-processing, registered as the task `ocr`."""

from factory.tasks import TASKS
from factory.tasks.ocr.task import Ocr

TASK = Ocr()
TASKS.add(TASK.name, TASK)

__all__ = ["TASK"]
