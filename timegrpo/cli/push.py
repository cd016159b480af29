"""``timegrpo push CHECKPOINT --repo-id ID [--dry-run]``: publish a checkpoint to the Hugging Face Hub.

Uploads the model weights and config, the processor (tokenizer, chat template, image/video processor), the run's
recipe (``recipe.yaml``), its training log and evaluations, and a model card (``README.md``) whose front matter
holds the licence, base model, tags, datasets and a ``model-index`` of the ``--eval`` results. Training state
(``state/``, optimizer, scheduler, RNG) is never uploaded.

``--dry-run`` writes the folder (to ``--out`` or a new temporary folder, printed), checks that it loads back with
``from_pretrained`` and that the card parses, and stops without touching the network. See
:mod:`timegrpo.hub.publish`.

    timegrpo push outputs/run/checkpoint-500 --repo-id me/time-r1-7b --eval charades=evals/charades --dry-run
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("push", help="upload a checkpoint with its processor, recipe and model card to the Hub",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint folder (output_dir/checkpoint-N, or any save_pretrained folder)")
    p.add_argument("--repo-id", required=True, help="Hub repository, 'user/name' (created if missing)")
    p.add_argument("--dry-run", action="store_true", help="write and check the folder, upload nothing")
    p.add_argument("--out", default=None, help="upload folder to write (empty or new; default: a temporary folder)")
    p.add_argument("--config", default=None,
                   help="the run's recipe/config YAML (default: config.yaml in the checkpoint or its parent)")
    p.add_argument("--eval", dest="evals", nargs="+", action="extend", default=[], metavar="[NAME=]DIR",
                   help="`timegrpo eval` output folder(s) with metrics.json; NAME names the benchmark")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", default=None, help="branch to upload to (created if missing; default main)")
    p.add_argument("--commit-message", default=None, help="commit message of the upload")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the `hf auth login` token)")
    p.add_argument("--license", default=None, help="licence in the card (default: the base model's when known)")
    p.add_argument("--base-model", default=None, help="Hub id of the base model (default: from the recipe)")
    p.add_argument("--dataset", dest="datasets", action="append", default=None, metavar="ID",
                   help="Hub dataset id for the card's `datasets` (repeatable; default: the train/eval files that are Hub ids, else none)")
    p.add_argument("--pipeline-tag", default=None, choices=["video-text-to-text", "image-text-to-text"],
                   help="pipeline tag (default: video-text-to-text when the processor has a video processor)")
    p.add_argument("--check", default="full", choices=["full", "meta", "none"],
                   help="load-back check: full (real weights), meta (names and shapes, no memory), none")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from timegrpo.hub import PushError, push_checkpoint

    try:
        result = push_checkpoint(
            args.checkpoint, args.repo_id, dry_run=args.dry_run, out=args.out, config=args.config,
            eval_dirs=args.evals, private=args.private, revision=args.revision,
            commit_message=args.commit_message, token=args.token, license=args.license,
            base_model=args.base_model, datasets=args.datasets, pipeline_tag=args.pipeline_tag, check=args.check)
    except PushError as err:
        print(f"timegrpo push: error: {err}", file=sys.stderr)
        return 1
    print(f"upload folder: {result.folder}")
    print(f"files ({len(result.files)}): {', '.join(result.files)}")
    for entry in result.skipped:
        print(f"left out: {entry}")
    for name, outcome in result.checks.items():
        print(f"check {name}: {outcome}")
    if result.url is None:
        print(f"dry run: nothing uploaded; `timegrpo push {args.checkpoint} --repo-id {args.repo_id}` uploads it")
    else:
        print(f"uploaded to https://huggingface.co/{args.repo_id}: {result.url}")
    return 0
