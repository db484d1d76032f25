"""The names rules share: loaders, datasets, loggers, trackers, progress bars, file readers.

One place for the vocabulary, so that two rules never disagree about what a logger or a
``DataLoader`` is. Qualified names are as :meth:`FileContext.qualname` resolves them.
"""

from __future__ import annotations

import ast
import re

#: ``DataLoader`` classes.
LOADERS = frozenset({"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"})

#: Dataset classes of torch itself (any ``torchvision.datasets.CapWords`` counts too).
DATASETS = frozenset(
    {"torch.utils.data.TensorDataset", "torch.utils.data.dataset.TensorDataset"}
    | {"torch.utils.data.ConcatDataset", "torch.utils.data.Subset"}
)

#: Methods of a ``logging.Logger`` (called on a receiver named like ``log``/``logger``).
LOG_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "critical", "exception", "log"}
)
_LOGGER_NAME = re.compile(r"log", re.IGNORECASE)

#: Methods of experiment trackers that record a value: TensorBoard writers, MLflow, Lightning
#: loggers, Aim, Comet, ClearML.
TRACKER_METHODS = frozenset(
    {"add_scalar", "add_scalars", "add_histogram", "add_text", "add_pr_curve"}
    | {"log_metric", "log_metrics", "log_scalar", "report_scalar", "track"}
)
#: Module-level tracker functions.
TRACKER_FUNCTIONS = frozenset(
    {"wandb.log", "mlflow.log_metric", "mlflow.log_metrics", "neptune.log_metric"}
)
#: Tracker methods that take images or figures.
IMAGE_METHODS = frozenset(
    {"add_image", "add_images", "add_figure", "add_video", "add_mesh", "log_image"}
)
#: Functions that write an image file.
IMAGE_FUNCTIONS = frozenset(
    {
        "torchvision.utils.save_image",
        "cv2.imwrite",
        "imageio.imwrite",
        "imageio.imsave",
        "imageio.v2.imwrite",
        "imageio.v3.imwrite",
        "matplotlib.pyplot.savefig",
        "matplotlib.pyplot.imsave",
        "skimage.io.imsave",
    }
)
#: Methods of tqdm-style progress bars that show a value.
PROGRESS_METHODS = frozenset({"set_postfix", "set_description", "set_postfix_str", "write"})

#: Functions that read a file from disk.
FILE_READERS = frozenset(
    {
        "PIL.Image.open",
        "cv2.imread",
        "imageio.imread",
        "imageio.v2.imread",
        "imageio.v3.imread",
        "skimage.io.imread",
        "matplotlib.pyplot.imread",
        "torchvision.io.read_image",
        "torchvision.io.decode_image",
        "torchvision.io.read_file",
        "numpy.load",
        "numpy.loadtxt",
        "numpy.fromfile",
        "pandas.read_csv",
        "pandas.read_parquet",
        "h5py.File",
        "scipy.io.loadmat",
        "soundfile.read",
        "librosa.load",
        "torchaudio.load",
    }
)


def last_names(qualnames: frozenset[str]) -> set[str]:
    """The last components of ``qualnames`` (what :func:`~torchstyle.lint.base.on_call` keys on)."""
    return {q.rsplit(".", 1)[1] for q in qualnames}


def is_logger_call(func: ast.expr) -> bool:
    """Whether ``func`` is ``logger.info``-style: a log method on a receiver named like a logger."""
    if not isinstance(func, ast.Attribute) or func.attr not in LOG_METHODS:
        return False
    receiver = func.value
    name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
    return bool(_LOGGER_NAME.search(name))
