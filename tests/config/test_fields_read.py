"""Every config field is read by the code: a field nothing reads is a fake feature (STYLE.md rule 11).

The scan looks, for every field of every command's config tree, for an attribute read ``.field_name`` in the
package's source outside the validators (``__post_init__`` and ``_check*`` methods). It cannot tell whose
attribute is read, so fields with a common name are also checked end to end below (``model.revision``,
``data.drop_duplicates``).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from timegrpo.config import RecipeConfig
from timegrpo.demo import DemoConfig
from timegrpo.detr.config import DetrConfig
from timegrpo.evaluate.config import EvalConfig, ScoreConfig

PACKAGE = Path(__file__).resolve().parents[2] / "timegrpo"
CONFIGS = (RecipeConfig, DetrConfig, EvalConfig, ScoreConfig, DemoConfig)

#: Fields read by name rather than as ``.field``: (config class, dotted field) -> where.
READ_BY_NAME = {
    (DetrConfig, "data.val"): "detr.features.load_split: getattr(cfg, split)",
    (DetrConfig, "data.test"): "detr.features.load_split: getattr(cfg, split)",
}


def attribute_reads() -> set[str]:
    """Names ``x`` of every ``something.x`` read in the package, outside config validators."""
    reads: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def __init__(self) -> None:
            self.functions: list[str] = []

        def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
            self.functions.append(node.name)
            self.generic_visit(node)
            self.functions.pop()

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Attribute(self, node: ast.Attribute) -> None:
            validating = any(f == "__post_init__" or f.startswith("_check") for f in self.functions)
            if isinstance(node.ctx, ast.Load) and not validating:
                reads.add(node.attr)
            self.generic_visit(node)

    for path in PACKAGE.rglob("*.py"):
        Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return reads


def leaf_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of the fields of a config tree (sections recursed into)."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += leaf_fields(type(default), f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def test_every_config_field_is_read_somewhere():
    reads = attribute_reads()
    unread = [f"{cls.__name__}: {name}" for cls in CONFIGS for name in leaf_fields(cls)
              if name.rsplit(".", 1)[-1] not in reads and (cls, name) not in READ_BY_NAME]
    assert not unread, f"config fields read nowhere (use them or remove them): {unread}"


def test_the_scan_finds_an_unread_field():
    @dataclasses.dataclass
    class Fake:
        surely_nobody_reads_this_field: int = 0

    assert leaf_fields(Fake)[0] not in attribute_reads()
    assert "train.beta" in leaf_fields(RecipeConfig) and "beta" in attribute_reads()


def test_allow_list_names_real_fields():
    for cls, name in READ_BY_NAME:
        assert name in leaf_fields(cls), name


def test_model_revision_reaches_from_pretrained(monkeypatch):
    """``model.revision`` is passed to both the model's and the processor's ``from_pretrained``."""
    import transformers

    from timegrpo.trainer.build import load_model

    seen = {}

    def fake(kind, result):
        def from_pretrained(name, **kwargs):
            seen[kind] = (name, kwargs.get("revision"))
            if result is None:
                raise OSError("stop here")
            return result
        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", fake("model", object()))
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", fake("processor", None))
    cfg = RecipeConfig()
    cfg.model.revision = "v1.2"
    with pytest.raises(OSError, match="stop here"):
        load_model(cfg)
    assert seen == {"model": ("Qwen/Qwen2.5-VL-7B-Instruct", "v1.2"), "processor": ("Qwen/Qwen2.5-VL-7B-Instruct", "v1.2")}


def test_drop_duplicates_reaches_the_reader(tmp_path):
    import json

    from timegrpo.trainer.build import load_samples

    record = {"qid": 1, "vid": "v", "query": "a dog runs", "duration": 30.0, "relevant_windows": [[1.0, 5.0]]}
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps({**record, "qid": q}) + "\n" for q in (1, 2)) + json.dumps({**record, "qid": 3,
                    "query": "another"}) + "\n")
    cfg = RecipeConfig()
    cfg.data.train_file, cfg.data.format = str(path), "moment_detr"
    assert len(load_samples(cfg)) == 3
    cfg.data.drop_duplicates = True
    assert len(load_samples(cfg)) == 2
