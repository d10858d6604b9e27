"""Torch models of cosine-host: the learned cosine transform, coefficient processors,
checkpoints and training. Imports nothing from stream/."""
from models.checkpoint import (CheckpointError, load_checkpoint, load_processors, read_checkpoint,
                               save_checkpoint)
from models.cosine import CosineDecoder, CosineEncoder
from models.transform import DTYPES, LearnedCosine

__all__ = ["CosineEncoder", "CosineDecoder", "LearnedCosine", "DTYPES", "save_checkpoint",
           "load_checkpoint", "load_processors", "read_checkpoint", "CheckpointError"]
