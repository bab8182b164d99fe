"""The catalogue of dataset issues: stable codes, a severity, and a message that says how to fix it.

Severity: `error` stops the import and changes nothing; `warning` keeps going (the files named are
left out or kept as said); `note` is information (for example a colour-mode conversion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from factory.errors import DatasetError

# code -> (severity, what is wrong, how to fix it)
CATALOGUE: dict[str, tuple[str, str, str]] = {
    "PATH_NOT_FOUND": ("error", "The path does not exist.", "Check the path; give a folder or a .zip file."),
    "NOT_AN_ARCHIVE": ("error", "The file is not a folder or a .zip archive.",
                       "Give a folder of images or a .zip of one (tar, rar and 7z are not read)."),
    "CORRUPT_ARCHIVE": ("error", "The .zip archive is damaged and cannot be read.",
                        "Re-create the archive (for example `zip -r data.zip folder/`) and import it again."),
    "ARCHIVE_TOO_LARGE": ("error", "The archive is over 2 GB (or unpacks to more than 20 GB).",
                          "Split the data into several archives or import the unpacked folder."),
    "TOO_MANY_FILES": ("error", "The archive holds more than 50,000 files.",
                       "Split it into archives of at most 50,000 files, or import the unpacked folder."),
    "UNSAFE_PATH": ("error", "The archive or label file has paths that point outside the dataset (absolute or "
                    "'..' paths).", "Use paths relative to the dataset folder, without '..'."),
    "UNKNOWN_FORMAT": ("error", "No supported dataset layout was found.",
                       "Use one folder per class, a train/val/test split of such folders, a Ku+ "
                       "txfl-result.json, or a CSV with columns path,label; or pass --format."),
    "LABEL_FILE_INVALID": ("error", "The label file cannot be read.",
                           "Fix the file at the position given; the expected shape is in the README."),
    "EMPTY_DATASET": ("error", "No usable labelled images were found.",
                      "Add images (png, jpg, jpeg, bmp, gif, tiff, webp) in one folder per class."),
    "TOO_FEW_CLASSES": ("error", "A classification dataset needs at least 2 classes.",
                        "Add a folder (or label) for each class you want the model to tell apart."),
    "UNSUPPORTED_EXTENSION": ("warning", "Files with an unsupported extension were skipped.",
                              "Convert them to png or jpg if they are images; otherwise remove them."),
    "CORRUPT_IMAGE": ("warning", "Corrupt or truncated images were left out.",
                      "Re-export or re-download these files, then import again."),
    "IMAGE_TOO_SMALL": ("warning", "Images under 30 px on a side were left out.",
                        "Use images at least 30x30 pixels."),
    "DECOMPRESSION_BOMB": ("warning", "Images with an implausible pixel count (over 89 million) were left out "
                           "as possible decompression bombs.", "Downscale these images before importing."),
    "DUPLICATE_IMAGE": ("warning", "Images with identical content were found; only the first copy is kept.",
                        "Remove the duplicates (a copy in two splits or two classes inflates accuracy)."),
    "CONFLICTING_LABELS": ("warning", "The same image content appears under different labels; all copies were "
                           "left out.", "Decide the right class for each file and keep one copy."),
    "MISSING_FILE": ("warning", "The label file names images that are not in the data.",
                     "Add the files or remove their entries from the label file."),
    "SMALL_CLASS": ("warning", "Classes with fewer than 20 images.",
                    "Add images to these classes (20+ per class, balanced, is the usual minimum)."),
    "INVALID_LABEL_NAME": ("warning", "Label names that are not valid identifiers (ASCII letters, digits, '_', "
                           "not starting with a digit).",
                           "Rename the folders or labels; some runtimes and platforms reject other names."),
    "COLOR_MODE_CONVERTED": ("note", "Images that are not RGB (RGBA, grayscale, palette, CMYK) are converted to "
                             "RGB when loaded.", "Nothing to do, unless the colour mode carries meaning."),
    # detection
    "UNKNOWN_DETECTION_FORMAT": ("error", "No supported detection layout was found.",
                                 "Use Pascal VOC XML beside the images (or in Annotations/), a COCO JSON, a YOLO "
                                 "data.yaml with images/ and labels/, a Ku+ txkt-result.json, a ModelArts .manifest, "
                                 "or a CSV with FILE_NAME, LABEL_VALUE, LABEL_COORDINATE; or pass --format."),
    "ANNOTATION_UNREADABLE": ("warning", "Annotation files that cannot be parsed were skipped (file and line given).",
                              "Fix the syntax at the position given, or remove the file."),
    "ANNOTATION_WITHOUT_IMAGE": ("warning", "Annotations name images that are not in the data; they were skipped.",
                                 "Add the images, or remove their annotations."),
    "IMAGE_WITHOUT_ANNOTATION": ("warning", "Images without an annotation file were left out (not treated as empty).",
                                 "Add an annotation for each (an empty one marks an image with no objects)."),
    "UNKNOWN_CLASS": ("warning", "Boxes with a class that the label list does not define were dropped.",
                      "Add the class to the category list (COCO categories, YOLO names) or fix the class id."),
    "BOX_DEGENERATE": ("warning", "Boxes under 2 px wide or high, or with min > max, were dropped.",
                       "Fix the coordinates; a box needs a width and a height of at least 2 px."),
    "BOX_CLIPPED": ("warning", "Boxes partly outside the image (less than half their area) were clipped to it.",
                    "Nothing to do if the clipped boxes look right; otherwise fix their coordinates."),
    "BOX_OUTSIDE_IMAGE": ("warning", "Boxes with half or more of their area outside the image were dropped.",
                          "Fix the coordinates (are they relative where pixels are expected, or the other way round?)."),
    "NEGATIVE_IMAGES": ("note", "Images annotated with no objects are kept as negatives (they teach the model "
                        "what is not an object).", "Nothing to do."),
    "UNLABELLED_IMAGES": ("note", "Images at the top level of a folder-per-class layout are kept as unlabelled "
                          "and not used for training.", "Move them into a class folder to use them."),
}

DETECTION_CODES = {"UNKNOWN_DETECTION_FORMAT", "ANNOTATION_UNREADABLE", "ANNOTATION_WITHOUT_IMAGE", "IMAGE_WITHOUT_ANNOTATION",
                   "UNKNOWN_CLASS", "BOX_DEGENERATE", "BOX_CLIPPED", "BOX_OUTSIDE_IMAGE", "NEGATIVE_IMAGES"}


@dataclass
class Issue:
    severity: str
    code: str
    message: str
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class IssueLog:
    """Collects issues by code, merging the files of repeated codes into one entry."""

    def __init__(self) -> None:
        self._issues: dict[str, Issue] = {}

    def add(self, code: str, files: list[str] | str | None = None, detail: str = "") -> None:
        severity, what, fix = CATALOGUE[code]
        files = [files] if isinstance(files, str) else list(files or [])
        if code in self._issues:
            self._issues[code].files.extend(files)
            return
        message = f"{what}{' ' + detail if detail else ''} Fix: {fix}"
        self._issues[code] = Issue(severity, code, message, files)

    def errors(self) -> list[Issue]:
        return [i for i in self._issues.values() if i.severity == "error"]

    def all(self) -> list[Issue]:
        order = {"error": 0, "warning": 1, "note": 2}
        return sorted(self._issues.values(), key=lambda i: (order[i.severity], i.code))

    def raise_if_errors(self) -> None:
        errors = self.errors()
        if errors:
            first = errors[0]
            shown = f" Files: {', '.join(first.files[:5])}" if first.files else ""
            raise DatasetError(first.message + shown, code=first.code,
                               details=[i.to_dict() for i in self.all()])


def fail(code: str, files: list[str] | str | None = None, detail: str = "") -> DatasetError:
    """An import-stopping DatasetError for one catalogue code."""
    log = IssueLog()
    log.add(code, files, detail)
    issue = log.all()[0]
    shown = f" Files: {', '.join(issue.files[:5])}" if issue.files else ""
    return DatasetError(issue.message + shown, code=code, details=[issue.to_dict()])
