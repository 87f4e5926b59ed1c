"""Generator families and real collections: which sources belong together when one is left out.

A source (the folder above the class folders) is not the unit a user worries about: a StyleGAN source
left out still has three StyleGAN cousins in training. The question is a *family* the model never saw,
and, for real photos, a *collection* (a camera, a photographer, a style) it never saw. Training,
evaluation, the model card and the nearest-family column all read the grouping from here.

The built-in table names the sources of `../shared/data`. A data folder may declare its own in
`families.json` at its top, which replaces the table for that folder:

    {"ai": {"stylegan": ["ffhq-stylegan", "genphotos"], "diffusion": ["sd21"]},
     "real": {"ffhq": ["ffhq-stylegan"], "studio": ["portraits-a", "portraits-b"]}}

An AI image belongs to the family that lists its source; a real image to the collection that lists its
source. A source listed nowhere is a family (or collection) of its own, named after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES_FILE = "families.json"

BUILT_IN: dict[str, dict[str, list[str]]] = {
    "ai": {
        "stylegan": ["ffhq-stylegan", "unsplash-tpdne", "genphotos", "boredhumans"],
        "stable-diffusion": ["sd14-blonde", "sd21-sdfd"],
        "t2i-tiles": ["sfhq-t2i"],
    },
    "real": {
        "ffhq": ["ffhq-stylegan"],
        "unsplash": ["unsplash-tpdne"],
    },
}


class FamiliesError(ValueError):
    """A families.json that cannot be used; one-line reason."""


@dataclass(frozen=True)
class Families:
    """Source -> family for AI images, source -> collection for real ones."""

    ai: dict[str, str] = field(default_factory=dict)
    real: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_declaration(cls, declared: dict) -> Families:
        """From the JSON shape above; refuses anything else in one line."""
        if not isinstance(declared, dict) or not set(declared) <= {"ai", "real"}:
            raise FamiliesError('families must be an object with "ai" and/or "real" keys')
        maps: dict[str, dict[str, str]] = {"ai": {}, "real": {}}
        for kind, groups in declared.items():
            if not isinstance(groups, dict):
                raise FamiliesError(f'"{kind}" must map a family name to a list of sources')
            for name, sources in groups.items():
                if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                    raise FamiliesError(f'family "{name}" must list source folder names')
                for source in sources:
                    if source in maps[kind]:
                        raise FamiliesError(f'source "{source}" is in two {kind} families')
                    maps[kind][source] = str(name)
        return cls(maps["ai"], maps["real"])

    @classmethod
    def for_folder(cls, data_dir: str | Path | None) -> Families:
        """The folder's own families.json if it has one, else the built-in table."""
        if data_dir is not None:
            path = Path(data_dir) / FAMILIES_FILE
            if path.is_file():
                try:
                    declared = json.loads(path.read_text())
                except (OSError, ValueError, RecursionError) as exc:
                    raise FamiliesError(f"{path} cannot be read as JSON: {exc}") from None
                try:
                    return cls.from_declaration(declared)
                except FamiliesError as exc:
                    raise FamiliesError(f"{path}: {exc}") from None
        return cls.from_declaration(BUILT_IN)

    def of(self, source: str, label: int | str) -> str:
        """The family of an AI image or the collection of a real one (label 1 or 'ai' is AI)."""
        if label in (1, "ai"):
            return self.ai.get(source, source)
        return self.real.get(source, source)

    def label_each(self, sources, labels) -> list[str]:
        return [self.of(str(s), int(v)) for s, v in zip(sources, labels, strict=True)]

    def describe(self, present: dict[str, set[str]] | None = None) -> dict:
        """family -> sources, as families.json would hold it. With `present` ({"ai": sources, "real":
        sources} found in a data folder), only those sources, each unlisted one as its own family."""
        out: dict[str, dict[str, list[str]]] = {"ai": {}, "real": {}}
        for kind, mapping in (("ai", self.ai), ("real", self.real)):
            sources = sorted(mapping) if present is None else sorted(present.get(kind, ()))
            for source in sources:
                out[kind].setdefault(mapping.get(source, source), []).append(source)
        return out
