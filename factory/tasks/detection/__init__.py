"""Object detection: the FCOS detector (`DETECTORS`), its dataset layouts, training, COCO metrics and NumPy
post-processing, registered as the task `detection`."""

from factory.datasets.images import letterbox
from factory.tasks import TASKS
from factory.tasks.detection.model import (DETECTORS, DetectorSpec, assign_targets, build_detector, clip_detections,
                                           decode, detection_loss, feature_sizes, locations, nms, postprocessing_spec,
                                           unletterbox)
from factory.tasks.detection.task import Detection

TASK = Detection()
TASKS.add(TASK.name, TASK)

__all__ = ["DETECTORS", "DetectorSpec", "TASK", "assign_targets", "build_detector", "clip_detections", "decode",
           "detection_loss", "feature_sizes", "letterbox", "locations", "nms", "postprocessing_spec", "unletterbox"]
