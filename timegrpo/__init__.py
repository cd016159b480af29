"""timegrpo: reinforcement-learning post-training of video LLMs for temporal video grounding.

Given a video and a sentence, a Qwen2-VL-family model answers
``<think>...</think><answer>12.5 to 17.8</answer>``; GRPO with a timestamp-aware IoU reward and a
format reward improves it. See README.md for the commands and ``../shared/SPEC.md`` for the maths.
"""

__version__ = "0.1.0"
