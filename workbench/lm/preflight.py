"""What `workbench jobs submit` checks of a `gpt_lm` config before anything is submitted."""

from __future__ import annotations

from workbench.lm.config import GPTLMConfig

__all__ = ["preflight_gpt_lm"]


def preflight_gpt_lm(config: GPTLMConfig) -> None:
    """A user corpus file that exists and is long enough, and a base-shape file that describes this
    model (InputError naming the problem)."""
    # Imported only when needed: reading a corpus or a .bsh file needs numpy, torch and mup, which
    # submitting a Markov-corpus job does not.
    if config.corpus == "file":
        from workbench.lm.corpora import load_corpus

        load_corpus(config)
    if config.base_shapes:
        from workbench.lm.model import check_base_shapes

        check_base_shapes(config.gpt_config(), config.base_shapes)
