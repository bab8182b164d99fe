"""Image retrieval: an embedding model (backbone + BN-neck + L2), identity-split datasets, metric-learning
training, Recall@K / MAP@R, registered as the task `retrieval`. The gallery index that searches its embeddings
lives in the top-level `retrieval/` package."""

from factory.tasks import TASKS
from factory.tasks.retrieval.task import Retrieval

TASK = Retrieval()
TASKS.add(TASK.name, TASK)

__all__ = ["TASK"]
