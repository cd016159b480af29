"""The reward registry, plug-in lookup and the checks every reward call goes through.

Protocol (TRL 1.16's ``GRPOTrainer._calculate_rewards``, so a TRL reward works here and ours work in TRL)::

    f(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=..., log_extra=..., log_metric=...)
        -> list[float | None]                           # one value per completion; may be ``async def``

* ``prompts``: each completion's prompt, the chat messages it was generated from (``[{"role": ...,
  "content": [...]}, ...]``; the video entry is ``{"type": "video", "video": path, ...}``);
* ``completions``: TRL's conversational form for chat prompts, ``[{"role": "assistant", "content": text}]``
  (timegrpo's prompts are always chats); called directly, plain strings work too. :func:`completion_text`
  reads either;
* ``completion_ids``: each completion's token ids, up to and including EOS (all of them when truncated);
* ``columns``: the sample's fields, one per completion (:func:`timegrpo.rewards.columns.reward_columns`):
  ``windows`` (``[[s, e], ...]``), ``duration``, ``qid``, ``vid``, ``video``, ``query``, ``video_start``,
  ``video_end`` and every ``meta`` key (``answer``, ``options``, ...);
* ``trainer_state``: a ``transformers.TrainerState`` (``global_step``, ``max_steps``, ``epoch``, ...);
* ``log_extra(column, values)``: one value per completion, a column of ``completions.jsonl`` (TRL: of its
  completions table); ``log_metric(name, value)``: a scalar, averaged over the step's calls on every process,
  in ``metrics.jsonl`` and wandb (TRL: beside ``kl`` and ``entropy``).

None means "does not apply to this completion": TRL maps it to NaN, sums the rewards that apply (``nansum``) and
makes a completion to which none applies NaN, out of its group's statistics with advantage 0; so does
:class:`timegrpo.rewards.RewardSet` (see :mod:`timegrpo.rewards.combine`). The one departure: a reward that
returns NaN or an infinite value itself is an error here (TRL would treat a NaN like a None), so a bug that
produces NaN is caught instead of silently dropping completions; return None for "does not apply".

A name resolves, in order, to: a reward registered here (the built-ins, or :func:`register_reward`), an entry
point of the ``timegrpo.rewards`` group (``name = package.module:function`` in a package's metadata), a
``package.module:function`` path, or a reward model: a local folder or a Hub id (``org/name``) of a
sequence-classification model and its tokenizer (:class:`timegrpo.rewards.model.RewardModel`, TRL's string
``reward_funcs``). :func:`get_reward` wraps the function so that an exception names the reward and the first sample
it fails on, and a result of the wrong length or type, or a NaN or infinite value, is an error naming the reward
and the sample (its ``qid`` when the columns carry one). Like TRL, it passes every argument by keyword. A reward
with ``**kwargs`` gets all of them; one without gets only the keywords it names (so ``f(completions, windows)``
works too, where TRL would raise).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from timegrpo.errors import UserError
from timegrpo.registry import Registry

RewardFunc = Callable[..., list[float | None]]
#: ``log_extra(column, values)``: a reward reports one value per completion under ``column`` (TRL's signature).
LogExtra = Callable[[str, list], None]
#: ``log_metric(name, value)``: a reward reports one scalar for the batch it scored (TRL's signature).
LogMetric = Callable[[str, float], None]
ENTRY_POINT_GROUP = "timegrpo.rewards"
#: The keywords through which a reward receives its :data:`LogExtra` and :data:`LogMetric` (TRL's names).
LOG_EXTRA = "log_extra"
LOG_METRIC = "log_metric"
#: What the trainer passes besides the sample columns (TRL's keywords); never a reward's option.
PROTOCOL_KEYWORDS = ("prompts", "completions", "completion_ids", "trainer_state", LOG_EXTRA, LOG_METRIC)
#: A Hub model id ``org/name``: read as a reward model when no reward has that name.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

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


def is_model_path(name: str) -> bool:
    """Whether ``name`` reads as a reward model: an existing folder, or a Hub id ``org/name`` (no ``:``).

    >>> is_model_path("org/reward-model"), is_model_path("my_pkg.rewards:f"), is_model_path("tiou")
    (True, False, False)
    """
    return ":" not in name and (Path(name).is_dir() or _HUB_ID.fullmatch(name) is not None)


def resolve_reward(name: str) -> RewardFunc:
    """The raw function for ``name`` (registry, then entry point, then ``module:function``); unwrapped.
    Reward models (:func:`is_model_path`) are loaded by :func:`get_reward`, not here."""
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
        f"unknown reward {name!r}; known: {', '.join(reward_names())} (or give a 'package.module:function' path, "
        f"a reward model's folder or Hub id, or install a package with a {ENTRY_POINT_GROUP!r} entry point)"
    )


def accepted_keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The keywords ``fn`` can be called with: None when it takes ``**kwargs`` (or its signature cannot be read),
    else the names of its parameters that can be passed by keyword.

    >>> accepted_keywords(lambda completions, **kw: []) is None, sorted(accepted_keywords(lambda completions, windows: []))
    (True, ['completions', 'windows'])
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(v.kind == v.VAR_KEYWORD for v in params.values()):
        return None
    return frozenset(p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY))


def is_async_reward(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def`` function, a ``functools.partial`` of one, or an
    object whose ``__call__`` is ``async`` (TRL runs these concurrently; so does :class:`RewardSet`).

    >>> async def judge(completions, **kw): return [1.0]
    >>> is_async_reward(judge), is_async_reward(functools.partial(judge)), is_async_reward(len)
    (True, True, False)
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    call = type(fn).__call__ if callable(fn) and not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _check_options(name: str, fn: RewardFunc, options: dict[str, Any]) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    named = {p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
    named -= set(PROTOCOL_KEYWORDS)
    unknown = sorted(set(options) - named)
    if unknown:
        raise TypeError(f"reward {name!r} has no option(s) {unknown}; its options are: {sorted(named) or 'none'}")


def _per_sample(columns: dict[str, Any], n: int, i: int) -> dict[str, Any]:
    """Columns sliced to sample ``i`` (per-completion lists only; other kwargs pass unchanged)."""
    return {k: ([v[i]] if isinstance(v, (list, tuple)) and len(v) == n else v) for k, v in columns.items()}


def _quiet(call: dict[str, Any]) -> dict[str, Any]:
    """``call`` with its ``log_extra`` / ``log_metric`` (when present) replaced by hooks that drop what they get,
    for the one-sample re-runs of a failed call."""
    return {k: (_ignore if k in (LOG_EXTRA, LOG_METRIC) else v) for k, v in call.items()}


def _ignore(name: str, value: Any) -> None:
    """A :data:`LogExtra` / :data:`LogMetric` that drops what it is given."""


def _failing_sample(fn: RewardFunc, completions: Sequence[Any], columns: dict[str, Any]) -> int | None:
    """Re-run ``fn`` one sample at a time; the index of the first that raises (None when none does alone)."""
    n = len(completions)
    for i in range(n):
        try:
            fn(completions=[completions[i]], **_per_sample(columns, n, i))
        except Exception:
            return i
    return None


async def _failing_sample_async(fn: RewardFunc, completions: Sequence[Any], columns: dict[str, Any]) -> int | None:
    """:func:`_failing_sample` of an async reward."""
    n = len(completions)
    for i in range(n):
        try:
            await fn(completions=[completions[i]], **_per_sample(columns, n, i))
        except Exception:
            return i
    return None


def _failure(name: str, exc: Exception, completions: Sequence[Any], idx: int | None,
             columns: dict[str, Any] | None = None) -> RewardError:
    """The error of a reward that raised: on which sample (its qid and video when the columns have them) and
    which completion, or on the batch when no single completion fails alone."""
    if idx is None:
        return RewardError(f"reward {name!r} raised {type(exc).__name__}: {exc} on the batch of {len(completions)}")
    cols = columns or {}
    ids = ", ".join(f"{key} {cols[key][idx]!r}" for key in ("qid", "video")
                    if isinstance(cols.get(key), (list, tuple)) and idx < len(cols[key]))
    where = f"on sample {idx}" + (f" ({ids})" if ids else "")
    return RewardError(f"reward {name!r} raised {type(exc).__name__}: {exc} {where} "
                       f"(completion: {completion_text(completions[idx])[:200]!r})")


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


def checked(name: str, fn: RewardFunc, options: dict[str, Any] | None = None) -> RewardFunc:
    """``fn`` with ``options`` bound, its output checked, and any exception re-raised as a :class:`RewardError`
    naming ``name`` and the first sample it fails on. The wrapper's ``__name__`` is ``name`` (TRL logs by it); it is
    ``async`` when ``fn`` is (:func:`is_async_reward`), so TRL gathers it with its other async rewards. Keywords
    ``fn`` cannot take (no ``**kwargs`` and no parameter of that name) are not passed (:func:`accepted_keywords`)."""
    opts = dict(options or {})
    _check_options(name, fn, opts)
    accepted = accepted_keywords(fn)

    def call_kwargs(columns: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(opts) & set(columns))
        if clash:
            raise RewardError(f"reward {name!r}: {clash} given both as an option and as a column")
        call = {**columns, **opts}
        return call if accepted is None else {k: v for k, v in call.items() if k in accepted}

    if is_async_reward(fn):

        async def reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
            call = call_kwargs(columns)
            try:
                out = await fn(completions=completions, **call)
            except RewardError:
                raise
            except Exception as exc:
                idx = await _failing_sample_async(fn, completions, _quiet(call))
                raise _failure(name, exc, completions, idx, columns) from exc
            return _check_output(name, out, len(completions), columns.get("qid"))
    else:

        def reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:  # type: ignore[misc]
            call = call_kwargs(columns)
            try:
                out = fn(completions=completions, **call)
            except RewardError:
                raise
            except Exception as exc:
                raise _failure(name, exc, completions, _failing_sample(fn, completions, _quiet(call)), columns) from exc
            return _check_output(name, out, len(completions), columns.get("qid"))

    reward.__name__ = name
    reward.__qualname__ = name
    reward.__doc__ = fn.__doc__
    reward.__wrapped__ = fn  # type: ignore[attr-defined]
    return reward


def get_reward(name: str | RewardFunc, **options: Any) -> RewardFunc:
    """A checked reward function by name (see the module docstring), with ``options`` bound as keywords (for a
    reward model: keyword arguments of its ``from_pretrained``, e.g. ``{"dtype": "bfloat16"}``).

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
    if is_model_path(name) and name not in REWARDS and name not in entry_point_names():
        from timegrpo.rewards.model import RewardModel

        return checked(name, RewardModel.from_pretrained(name, **options))
    return checked(name, resolve_reward(name), options)
