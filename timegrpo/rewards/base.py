"""The reward registry, plug-in lookup and the checks every reward call goes through.

Protocol (TRL's, so a TRL reward works here and ours work in TRL): ``f(completions, **columns) ->
list[float | None]``, one value per completion; None means "does not apply to this sample" (TRL skips it
when summing). ``completions`` are strings or TRL conversational completions
(``[{"role": "assistant", "content": "..."}]``); :func:`completion_text` reads either. The columns are
per-completion lists: ``windows`` (ground-truth ``[[s, e], ...]``), ``duration`` (seconds) and, for
grounded QA, ``answer`` and ``options``; TRL adds more (``prompts``, ``completion_ids``, ``trainer_state``),
so every reward takes ``**columns`` and ignores what it does not use.

A name resolves, in order, to: a reward registered here (the built-ins, or :func:`register_reward`), an entry
point of the ``timegrpo.rewards`` group (``name = package.module:function`` in a package's metadata), or a
``package.module:function`` path. :func:`get_reward` wraps the function so that an exception names the reward
and the first sample it fails on, and a result of the wrong length or type, or a NaN or infinite value, is an error
naming the reward and the sample (its ``qid`` when the columns carry one). Like TRL, it passes ``completions`` by keyword, so a
reward declared ``f(prompts, completions, **kwargs)`` works too.

Rewards report what they parsed through TRL's ``log_extra`` keyword: ``log_extra(column, values)`` with one
value per completion (e.g. the built-in ``iou``/``tiou`` report ``pred_start``, ``pred_end`` and ``iou``).
:class:`timegrpo.rewards.RewardSet` collects those columns into ``RewardBreakdown.extra``, as TRL's trainer adds
them to its completions table. It is passed only to a reward that accepts it (a ``log_extra`` parameter or
``**kwargs``), so a reward with an explicit signature and no ``**kwargs`` still works; it is not an option.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

from timegrpo.errors import UserError
from timegrpo.registry import Registry

RewardFunc = Callable[..., list[float | None]]
#: ``log_extra(column, values)``: a reward reports one value per completion under ``column`` (TRL's signature).
LogExtra = Callable[[str, list], None]
ENTRY_POINT_GROUP = "timegrpo.rewards"
#: The keyword through which a reward receives its :data:`LogExtra` (TRL's name).
LOG_EXTRA = "log_extra"

REWARDS: Registry[RewardFunc] = Registry("reward")


class RewardError(UserError, RuntimeError):
    """A reward function failed or broke the protocol; the message names the reward and the sample."""


def register_reward(name: str) -> Callable[[RewardFunc], RewardFunc]:
    """Decorator: register a reward under ``name`` (a taken name is an error)."""
    return REWARDS.register(name)  # type: ignore[return-value]


def completion_text(completion: Any) -> str:
    """The text of one completion: a str, or the assistant content of TRL conversational messages.

    A message's content may be a str or a list of parts (``{"type": "text", "text": ...}``); with several
    messages the assistant ones are joined.

    >>> completion_text("<answer>1 to 2</answer>")
    '<answer>1 to 2</answer>'
    >>> completion_text([{"role": "assistant", "content": "<answer>1 to 2</answer>"}])
    '<answer>1 to 2</answer>'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}])
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts: list[str] = []
    for msg in completion:
        if msg.get("role", "assistant") != "assistant":
            continue
        content = msg.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if p.get("type", "text") == "text")
    return "".join(parts)


def column(columns: dict[str, Any], name: str, n: int, reward: str, *, required: bool = True) -> list[Any]:
    """The per-completion list ``columns[name]`` checked to have ``n`` items (``[None] * n`` if optional and absent)."""
    values = columns.get(name)
    if values is None:
        if required:
            known = ", ".join(sorted(columns)) or "(none)"
            raise RewardError(f"reward {reward!r} needs a {name!r} column; the columns given were: {known}")
        return [None] * n
    if len(values) != n:
        raise RewardError(f"reward {reward!r}: column {name!r} has {len(values)} items for {n} completions")
    return list(values)


def entry_point_names() -> list[str]:
    """Names of the rewards that installed packages declare in the ``timegrpo.rewards`` entry-point group."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def reward_names() -> list[str]:
    """All names :func:`get_reward` resolves without a path: built-ins/registered plus entry points."""
    return sorted(set(REWARDS.names()) | set(entry_point_names()))


def _load_path(path: str) -> RewardFunc:
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise KeyError(f"reward {path!r}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise KeyError(f"reward {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise KeyError(f"reward {path!r} is not callable")
    return obj


def resolve_reward(name: str) -> RewardFunc:
    """The raw function for ``name`` (registry, then entry point, then ``module:function``); unwrapped."""
    if name in REWARDS:
        return REWARDS.get(name)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:
                raise KeyError(f"reward {name!r}: entry point {ep.value!r} failed to load: {exc}") from exc
    if ":" in name:
        return _load_path(name)
    raise KeyError(
        f"unknown reward {name!r}; known: {', '.join(reward_names())} "
        f"(or give a 'package.module:function' path, or install a package with a {ENTRY_POINT_GROUP!r} entry point)"
    )


def accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` can be called with the keyword ``name`` (a parameter of that name, or ``**kwargs``);
    False when its signature cannot be read.

    >>> accepts_keyword(lambda completions, **kw: [], "log_extra"), accepts_keyword(lambda completions: [], "log_extra")
    (True, False)
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    if p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
        return True
    return any(v.kind == v.VAR_KEYWORD for v in params.values())


def _check_options(name: str, fn: RewardFunc, options: dict[str, Any]) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    named = {p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
    named -= {"completions", LOG_EXTRA}
    unknown = sorted(set(options) - named)
    if unknown:
        raise TypeError(f"reward {name!r} has no option(s) {unknown}; its options are: {sorted(named) or 'none'}")


def _per_sample(columns: dict[str, Any], n: int, i: int) -> dict[str, Any]:
    """Columns sliced to sample ``i`` (per-completion lists only; other kwargs pass unchanged)."""
    return {k: ([v[i]] if isinstance(v, (list, tuple)) and len(v) == n else v) for k, v in columns.items()}


def _failing_sample(fn: RewardFunc, completions: Sequence[Any], columns: dict[str, Any]) -> int | None:
    """Re-run ``fn`` one sample at a time; the index of the first that raises (None when none does alone)."""
    n = len(completions)
    for i in range(n):
        try:
            fn(completions=[completions[i]], **_per_sample(columns, n, i))
        except Exception:
            return i
    return None


def _where(i: int, qids: Any) -> str:
    """``sample i (qid '...')``, or ``sample i`` when there is no per-completion ``qid`` column."""
    return f"sample {i} (qid {qids[i]!r})" if isinstance(qids, (list, tuple)) and i < len(qids) else f"sample {i}"


def _check_output(name: str, out: Any, n: int, qids: Any = None) -> list[float | None]:
    if not isinstance(out, (list, tuple)) and not hasattr(out, "tolist"):
        raise RewardError(f"reward {name!r} returned {type(out).__name__}; it must return a list of floats or None")
    values = out.tolist() if hasattr(out, "tolist") else list(out)
    if len(values) != n:
        raise RewardError(f"reward {name!r} returned {len(values)} values for {n} completions")
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, (int, float)):
            raise RewardError(f"reward {name!r} returned {v!r} ({type(v).__name__}) for {_where(i, qids)}; "
                              "want float or None")
        if v is not None and not math.isfinite(v):
            raise RewardError(f"reward {name!r} returned {v} for {_where(i, qids)}; a reward must be finite "
                              "(return None where it does not apply)")
    return [None if v is None else float(v) for v in values]


def _ignore_extra(column: str, values: list) -> None:
    """A :data:`LogExtra` that drops what it is given (the one-sample re-runs of a failed call)."""


def checked(name: str, fn: RewardFunc, options: dict[str, Any] | None = None) -> RewardFunc:
    """``fn`` with ``options`` bound, its output checked, and any exception re-raised as a :class:`RewardError`
    naming ``name`` and the first sample it fails on. The wrapper's ``__name__`` is ``name`` (TRL logs by it).
    A ``log_extra`` keyword reaches ``fn`` only when ``fn`` accepts it (:func:`accepts_keyword`)."""
    opts = dict(options or {})
    _check_options(name, fn, opts)
    takes_log_extra = accepts_keyword(fn, LOG_EXTRA)

    def reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
        if not takes_log_extra:
            columns.pop(LOG_EXTRA, None)
        clash = sorted(set(opts) & set(columns))
        if clash:
            raise RewardError(f"reward {name!r}: {clash} given both as an option and as a column")
        call_cols = {**columns, **opts}
        try:
            out = fn(completions=completions, **call_cols)
        except RewardError:
            raise
        except Exception as exc:
            quiet = {**call_cols, LOG_EXTRA: _ignore_extra} if LOG_EXTRA in call_cols else call_cols
            idx = _failing_sample(fn, completions, quiet)
            where = f"on sample {idx}" if idx is not None else f"on the batch of {len(completions)}"
            text = completion_text(completions[idx])[:200] if idx is not None else ""
            detail = f" (completion: {text!r})" if idx is not None else ""
            raise RewardError(f"reward {name!r} raised {type(exc).__name__}: {exc} {where}{detail}") from exc
        return _check_output(name, out, len(completions), columns.get("qid"))

    reward.__name__ = name
    reward.__qualname__ = name
    reward.__doc__ = fn.__doc__
    reward.__wrapped__ = fn  # type: ignore[attr-defined]
    return reward


def get_reward(name: str | RewardFunc, **options: Any) -> RewardFunc:
    """A checked reward function by name (see the module docstring), with ``options`` bound as keywords.

    >>> f = get_reward("iou")
    >>> f(["<answer>0 to 10</answer>", "none"], windows=[[[5, 10]], [[5, 10]]], duration=[20.0, 20.0])
    [0.5, 0.0]
    >>> get_reward("tiou", strict=True).__name__
    'tiou'
    >>> get_reward("nope")
    Traceback (most recent call last):
    ...
    KeyError: "unknown reward 'nope'; known: ...
    """
    if callable(name):
        return checked(getattr(name, "__name__", "reward"), name, options)
    return checked(name, resolve_reward(name), options)
