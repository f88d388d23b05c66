"""Training, sampling and evaluation of fastgen's models (the ``fastgen train`` workflow).

``train(TrainConfig(...))`` runs a job from Python; recipes (``fastgen.train.recipes``) plug a
model in. See docs/TRAINING.md.
"""

from fastgen.train.trainer import TrainConfig, TrainingDiverged, TrainingInterrupted, train

__all__ = ["TrainConfig", "TrainingDiverged", "TrainingInterrupted", "train"]
