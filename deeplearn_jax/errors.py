"""Errors a user can fix, and the exit codes the command line gives them."""


class UserError(Exception):
  """Bad input: config, data, workdir or checkpoint. Printed as one line, exit 2."""

  exit_code = 2


class DataError(UserError):
  """A dataset is unknown, missing or corrupt."""


class WorkdirError(UserError):
  """The workdir cannot be written, or holds a run of another config."""


class TrainingDiverged(Exception):
  """The loss became NaN or Inf; the last good checkpoint is kept. Exit 3."""

  exit_code = 3


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint of the current step was written. Exit 75 (EX_TEMPFAIL:
  rerun the same command to resume)."""

  exit_code = 75
