"""A reward a random tiny model can follow (longer completions score higher), for launched processes: the
DeepSpeed tests put this folder on PYTHONPATH and name it ``--train.reward_funcs length_reward:length``."""


def length(completions, **columns):
    return [len(c[0]["content"]) / 50.0 for c in completions]  # TRL's conversational form
