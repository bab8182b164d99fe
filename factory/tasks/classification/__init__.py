"""Image classification: architectures (`MODELS`), dataset layouts, training, metrics and reports, registered as
the task `classification`."""

from factory.tasks import TASKS
from factory.tasks.classification.models import (IMAGENET_MEAN, IMAGENET_STD, MODELS, ArchSpec, build_model,
                                                 imagenet_weights_available, load_matching, load_pretrained,
                                                 postprocessing_spec, preprocessing_spec, pretrained_path, softmax_topk)
from factory.tasks.classification.task import Classification

TASK = Classification()
TASKS.add(TASK.name, TASK)

__all__ = ["ArchSpec", "IMAGENET_MEAN", "IMAGENET_STD", "MODELS", "TASK", "build_model", "imagenet_weights_available",
           "load_matching", "load_pretrained", "postprocessing_spec", "preprocessing_spec", "pretrained_path",
           "softmax_topk"]
