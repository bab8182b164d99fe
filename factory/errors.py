"""One error hierarchy for the whole factory.

Every message says what went wrong and how to fix it. The CLI exits non-zero with the message,
the server maps each kind to one HTTP status and a stable code, the chat shows it in plain words.
"""

from __future__ import annotations


class FactoryError(Exception):
    """Base class: `code` is stable, `message` says what happened, `fix` how to get past it."""

    code = "FACTORY_ERROR"

    def __init__(self, message: str, *, fix: str = "", code: str | None = None, details: object = None):
        self.message = message
        self.fix = fix
        self.details = details
        if code:
            self.code = code
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.fix}" if self.fix else self.message

    def __reduce__(self):  # crosses process boundaries (factory.isolated) with its fix, code and details
        return _rebuild, (type(self), self.message, self.fix, self.code, self.details)

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message, "fix": self.fix}
        if self.details is not None:
            out["details"] = self.details
        return out


def _rebuild(cls: type, message: str, fix: str, code: str, details: object) -> FactoryError:
    return cls(message, fix=fix, code=code, details=details)


class ConfigError(FactoryError):
    code = "CONFIG_ERROR"


class DatasetError(FactoryError):
    code = "DATASET_ERROR"


class NotFoundError(FactoryError):
    code = "NOT_FOUND"


class UnsupportedSpecError(FactoryError):
    code = "UNSUPPORTED_SPEC"


class MissingDependencyError(FactoryError):
    code = "MISSING_DEPENDENCY"


class TrainingError(FactoryError):
    code = "TRAINING_ERROR"


class ExportError(FactoryError):
    code = "EXPORT_ERROR"


class ParityError(FactoryError):
    code = "PARITY_ERROR"


class BudgetError(FactoryError):
    code = "BUDGET_ERROR"


class ModelFileError(FactoryError):
    code = "MODEL_FILE_CORRUPT"


class CatalogError(FactoryError):
    code = "CATALOG_ERROR"
