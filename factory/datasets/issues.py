"""The catalogue of dataset issues: stable codes, a severity, and a message that says how to fix it.

Severity: `error` stops the import and changes nothing; `warning` keeps going (the files named are
left out or kept as said); `note` is information (for example a colour-mode conversion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from factory.errors import DatasetError

# code -> (severity, what is wrong, how to fix it): the codes every task shares; each task registers its own
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
    "LABEL_FILE_INVALID": ("error", "The label file cannot be read.",
                           "Fix the file at the position given; the expected shape is in the README."),
    "EMPTY_DATASET": ("error", "No usable labelled images were found.",
                      "Add images (png, jpg, jpeg, bmp, gif, tiff, webp) in one folder per class."),
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
    "MISSING_FILE": ("warning", "The label file names images that are not in the data.",
                     "Add the files or remove their entries from the label file."),
    "COLOR_MODE_CONVERTED": ("note", "Images that are not RGB (RGBA, grayscale, palette, CMYK) are converted to "
                             "RGB when loaded.", "Nothing to do, unless the colour mode carries meaning."),
}



def register_codes(codes: dict[str, tuple[str, str, str]]) -> set[str]:
    """Add a task's own issue codes to the catalogue (a code may be registered once); returns their names."""
    taken = sorted(set(codes) & set(CATALOGUE))
    if taken:
        raise ValueError(f"issue codes already registered: {', '.join(taken)}")
    CATALOGUE.update(codes)
    return set(codes)


@dataclass
class Issue:
    severity: str
    code: str
    message: str
    files: list[str] = field(default_factory=list)
    detail: str = ""  # the specifics beyond the catalogue's words (a line number, a class name): for translations

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
        self._issues[code] = Issue(severity, code, message, files, detail)

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
