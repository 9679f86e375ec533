"""The lung segmenter's card: `lung_segmenter_card.md` filled from one `covid-cxr train-lungs` run, so the standard
segmentation model (LUNGS/pipeline/) says on the Hub what it was fitted on and how well it found the lungs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from huggingface_hub import ModelCard, ModelCardData

from covid_cxr.cards.facts import DataFacts, data_facts
from covid_cxr.cards.markdown import TEMPLATES
from covid_cxr.cards.model import research_only_terms
from covid_cxr.model_folder import LICENSE


class MaskedRecord(Protocol):
    """What the card reads of each masked image (covid_cxr.lungs.fitting.MaskedImage is one)."""

    patient_id: str
    source: str
    label: str
    license: str


MASKS_LICENSE_UNSTATED = "their licence was not stated (`--masks_license`)"


def pair_facts(pairs: Sequence[MaskedRecord]) -> DataFacts:
    """What the cards may say of the masked images: sources, labels and licences, from their metadata."""
    return data_facts([p.source for p in pairs], [p.label for p in pairs], [p.license for p in pairs])


def render_segmenter_card(
    pairs: Sequence[MaskedRecord],
    cv: dict[str, object] | None,
    backbone: dict[str, object],
    side: int,
    model_id: str,
    masks_license: str | None,
) -> ModelCard:
    """The card of the standard segmenter fitted on `pairs`: `cv` is its cross-validation (None when skipped),
    `backbone` the starting weights' provenance, `side` its input, `model_id` what `pipeline()` is given."""
    facts = pair_facts(pairs)
    counts = Counter((p.source, p.label) for p in pairs)
    labels = {label for _, label in counts}
    card_data = ModelCardData(
        license="other",
        license_name="research-only",
        license_link=LICENSE,
        library_name="transformers",
        pipeline_tag="image-segmentation",
        base_model=str(backbone.get("base_model") or backbone.get("hub_equivalent") or "") or None,
        tags=["medical", "chest-x-ray", "lung-segmentation", "research-only", "not-for-clinical-use"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "lung_segmenter_card.md"),
        backbone=backbone["description"],
        backbone_license=backbone.get("license"),
        images=len(pairs),
        patients=len({p.patient_id for p in pairs}),
        model_id=model_id,
        side=side,
        cv=cv,
        sources=[
            {"source": source or "not stated", "label": label or "not stated", "images": n}
            for (source, label), n in sorted(counts.items())
        ],
        facts=facts,
        one_label=next(iter(labels)) if len(labels) == 1 and "" not in labels else None,
        masks_license=f"licensed {masks_license}" if masks_license else MASKS_LICENSE_UNSTATED,
        license_file=LICENSE,
    )


def segmenter_terms(pairs: Sequence[MaskedRecord], masks_license: str | None) -> str:
    """LICENSE.md of the standard segmenter: research use only, the images' terms, and the masks'."""
    facts = pair_facts(pairs)
    masks = f"The masks are licensed {masks_license}." if masks_license else "The masks state no licence."
    return research_only_terms(facts, "covid-cxr lung segmenter", "fitted") + f"\n{masks}\n"
