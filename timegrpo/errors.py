"""The one base of every error a user can fix by changing their input (a file, a record, an option).

Each domain keeps its own error type (:class:`timegrpo.config.core.ConfigError`,
:class:`timegrpo.data.anomalies.AnnotationError`, :class:`timegrpo.data.video.VideoError`,
:class:`timegrpo.evaluate.config.EvalError`, :class:`timegrpo.hub.run.PushError`,
:class:`timegrpo.rewards.base.RewardError`, :class:`UnknownNameError`), each also a :class:`UserError`. Their
messages name what was wrong, where (file, record, qid) and what to do, so the command line prints the message on
one line and exits 2, without a traceback (``timegrpo --debug ...`` or ``TIMEGRPO_DEBUG=1`` shows it).
Anything else that escapes a command is a bug in timegrpo and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input; the message is complete on its own (what, where, what to do)."""


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry (a reward, a format, a selector...); a ``KeyError`` too, so code that
    looked names up with ``try/except KeyError`` keeps working."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
