"""`electra tokenizer`: train a WordPiece vocabulary (`electra_pipeline.data.tokenizer`), or take a
checkpoint's (`electra_pipeline.modeling.warmstart`), from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from electra_cli.flags import HelpFormatter, add_field_flags, fields_from_args
from electra_pipeline.data.tokenizer import TokenizerConfig, load_tokenizer, train_wordpiece
from electra_pipeline.errors import ConfigError

_FLAG_FIELDS = ["vocab_size", "min_frequency", "limit_alphabet", "max_chars", "model_max_length"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `electra tokenizer`."""
    p = subparsers.add_parser(
        "tokenizer", help="train a BERT-style WordPiece vocabulary",
        description="Train a WordPiece tokenizer (BERT normaliser and pre-tokeniser; [PAD]=0 [UNK]=1 [CLS]=2 "
                    "[SEP]=3 [MASK]=4) on a corpus directory from `electra corpus` (or raw text files), and save "
                    "tokenizer.json, vocab.txt, tokenizer_config.json and special_tokens_map.json to --out, "
                    "loadable by transformers' AutoTokenizer/BertTokenizer.from_pretrained.",
        formatter_class=HelpFormatter)
    p.add_argument("corpus", nargs="*", type=Path, metavar="CORPUS",
                   help="corpus directory (Parquet shards) or raw text sources")
    p.add_argument("--from", dest="from_checkpoint", metavar="SRC", default=None,
                   help="no training: write the vocabulary of the ELECTRA checkpoint SRC (a run directory or a "
                        "Hugging Face directory with vocab.txt/tokenizer.json) in this layout, for continuing its "
                        "pre-training with `electra pretrain --init-from SRC`")
    p.add_argument("--extend-vocab", type=int, default=0, metavar="N",
                   help="with --from: add the N domain words of CORPUS that the checkpoint's vocabulary splits "
                        "into the most extra pieces (count x (pieces - 1)); their embeddings start as the mean "
                        "of their pieces'")
    p.add_argument("--out", "-o", required=True, type=Path, help="output tokenizer directory (replaced atomically)")
    add_field_flags(p, TokenizerConfig, ["vocab_size", "min_frequency"])
    p.add_argument("--cased", action="store_true", help="keep case (default: lowercase, as BERT/ELECTRA uncased)")
    accents = p.add_mutually_exclusive_group()
    accents.add_argument("--strip-accents", dest="strip_accents", action="store_const", const=True, default=None,
                         help="remove accents (default: only when lowercasing)")
    accents.add_argument("--keep-accents", dest="strip_accents", action="store_const", const=False,
                         help="keep accents even when lowercasing")
    add_field_flags(p, TokenizerConfig, ["limit_alphabet", "max_chars", "model_max_length"])
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.from_checkpoint is not None:
        from electra_pipeline.modeling import warmstart

        if args.extend_vocab < 0:
            raise ConfigError(f"extend_vocab: must be >= 0, got {args.extend_vocab}")
        if bool(args.corpus) != bool(args.extend_vocab):
            raise ConfigError("corpus: with --from, give a corpus exactly when --extend-vocab N counts words in it")
        corpus = (args.corpus[0] if len(args.corpus) == 1 else list(args.corpus)) if args.corpus else None
        path = warmstart.save_tokenizer(args.from_checkpoint, args.out, args.extend_vocab, corpus)
        print(f"tokenizer: {load_tokenizer(path).get_vocab_size():,} tokens from {args.from_checkpoint} -> {path}")
        if args.extend_vocab:
            from electra_pipeline.modeling.warmstart import extension_of

            tpw = extension_of(path)["tokens_per_word"]
            print(f"  {len(extension_of(path)['added']):,} domain words added: {tpw['before']:.3f} -> {tpw['after']:.3f} "
                  "tokens per word on the corpus")
        return 0
    if not args.corpus:
        raise ConfigError("corpus: give a corpus directory or text files (or --from CHECKPOINT)")
    if args.extend_vocab:
        raise ConfigError("extend_vocab: extends a checkpoint's vocabulary; use it with --from")
    cfg = TokenizerConfig(**fields_from_args(args, TokenizerConfig, _FLAG_FIELDS), lowercase=not args.cased,
                          strip_accents=args.strip_accents)
    corpus = args.corpus[0] if len(args.corpus) == 1 else list(args.corpus)
    start = time.perf_counter()
    path = train_wordpiece(corpus, args.out, cfg, progress=not args.no_progress)
    tok = load_tokenizer(path)
    print(f"tokenizer: {tok.get_vocab_size():,} tokens in {time.perf_counter() - start:.1f} s -> {path}")
    if tok.get_vocab_size() != cfg.vocab_size:
        why = ("the corpus has fewer distinct pieces" if tok.get_vocab_size() < cfg.vocab_size else
               f"every character of the alphabet (up to --limit-alphabet {cfg.limit_alphabet}) is kept, with its "
               "## form")
        print(f"note: asked for {cfg.vocab_size:,} tokens, got {tok.get_vocab_size():,}: {why}; the model's "
              "vocab_size must be the tokenizer's", file=sys.stderr)
    return 0

