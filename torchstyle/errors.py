"""Errors that mean "the user asked for something wrong" or "the run cannot go on",
not "torchstyle broke"."""


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with ``exit_code``, no traceback.

    The message names the problem and the fix.
    """

    exit_code = 2
    #: Raised alike on every process of a run (a decision they agreed on), so one prints it.
    #: An error raised before the processes joined is treated so whatever this says.
    same_on_every_rank = False


class TrainingError(UserError):
    """The run cannot go on (a non-finite loss under ``--nan-policy stop``); exit code 3."""

    exit_code = 3
    same_on_every_rank = True  # the loss is checked after its all-reduce: every rank sees it


class RunInterruptedError(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint at the current batch was saved."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(f"interrupted by signal {signum}; checkpoint saved to {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint
