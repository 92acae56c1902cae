"""Which prompts build CLIP's two heads: the zero-shot head (CT's init, the zero-shot baseline and
SCE's soft targets) and the CLIP filter's. Pure: a function of the config.

The paper's code averages a template ensemble for the zero-shot head (CLIP's 18 for CIFAR) and scores
CF with one prompt per dataset; `clip.templates` and `filter.templates` replace either.
"""

from __future__ import annotations

from synthvision.core.config import RunConfig
from synthvision.core.label_spaces import LabelSpace, label_space_name


def _space(config: RunConfig) -> LabelSpace:
    return LabelSpace(label_space_name(config.label_space), ())  # templates go by name; no file is read


def zero_shot_templates(config: RunConfig) -> list[str]:
    return config.clip.templates or list(_space(config).zero_shot_templates)


def filter_templates(config: RunConfig) -> list[str]:
    return config.filter.templates or [_space(config).filter_template]


def single_head_templates(config: RunConfig) -> list[str]:
    """The templates of the one head synthvision used for both before they were told apart: a head
    built from these hashes as it always did (no hash entry), so earlier outputs stay valid."""
    return config.clip.templates or [config.prompts.template or _space(config).default_template]
