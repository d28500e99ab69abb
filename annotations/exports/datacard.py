"""The data card in every export: ``datacard.json`` and the same as ``README.md``.

Its sections follow Datasheets for Datasets (Gebru et al.: motivation, composition, collection,
preprocessing and labelling, uses, distribution, maintenance) and its ``croissant_rai`` block the
Croissant Responsible-AI vocabulary (``rai:*`` properties). The facts come from the caller (the
service reads them from the database); this module only arranges them, so it needs no database.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class CardFacts:
    """Everything the card states. Shares are in [0, 1]; ``raters_per_image`` holds min, median,
    mean and max of the annotations per exported task; ``reliability`` one summary per class
    (raters, median weight, median sensitivity and precision); ``fusion`` the method and its
    parameters; ``validation`` the latest dataset validation's result summary, if any."""

    name: str
    description: str
    licence: str
    source_formats: dict[str, int]
    deidentification: dict
    exported_at: str
    crowdseg_version: str
    formats: list[str]
    contents: list[str]
    filters: dict
    classes: list[dict]
    cases: int
    training_cases: int
    raters: int
    raters_per_image: dict
    reliability: list[dict]
    fusion: dict
    gold_count: int
    anchoring_share: float | None
    suggestion_models: list[str]
    synthetic: dict
    validation: dict | None
    outputs: dict = field(default_factory=dict)


def card(facts: CardFacts) -> dict:
    """The ``datacard.json`` document."""
    f = facts
    return {
        "name": f.name,
        "exported_at": f.exported_at,
        "crowdseg_version": f.crowdseg_version,
        "licence": f.licence or "not stated by the dataset's owner",
        "export": {"formats": f.formats, "contents": f.contents, "filters": f.filters, "outputs": f.outputs},
        "datasheet": {
            "motivation": f.description or "not stated",
            "composition": {
                "images": f.cases,
                "training_cases": f.training_cases,
                "source_formats": f.source_formats,
                "label_classes": f.classes,
                "gold_standards": f.gold_count,
                "synthetic": f.synthetic,
            },
            "collection_process": {
                "raters": f.raters,
                "raters_per_image": f.raters_per_image,
                "platform": "crowdseg (game-style crowd segmentation with MedSAM suggestions)",
                "anchoring_share": f.anchoring_share,
                "suggestion_models": f.suggestion_models,
            },
            "preprocessing_and_labelling": {
                "deidentification": f.deidentification,
                "fusion": f.fusion,
                "rater_reliability": f.reliability,
            },
            "uses": {"validation": f.validation},
            "distribution": {"licence": f.licence or "not stated"},
            "maintenance": "Exports are snapshots: export again for the current labels.",
        },
        "croissant_rai": {
            "rai:dataCollection": "Volunteers segment images in short game rounds; an AI model suggests a mask "
            "from their box or points, which they may correct.",
            "rai:dataCollectionType": ["Crowdsourced", "Manual Human Curated"],
            "rai:dataAnnotationProtocol": "Several raters per image; hidden gold-standard images measure each "
            "rater; labels are fused by reliability-weighted EM (see fusion).",
            "rai:dataAnnotationPlatform": "crowdseg",
            "rai:dataAnnotationAnalysis": {"reliability": f.reliability, "anchoring_share": f.anchoring_share},
            "rai:annotationsPerItem": f.raters_per_image,
            "rai:annotatorDemographics": "not collected; raters appear only as opaque ids",
            "rai:dataPreprocessingProtocol": f.deidentification,
            "rai:personalSensitiveInformation": "Medical images, de-identified on import; no rater is named.",
            "rai:dataBiases": "AI-suggestion anchoring (anchoring_share); fused labels inherit the crowd's "
            "common errors.",
            "rai:dataLimitations": "Fused labels are crowd consensus, not expert ground truth, except gold standards.",
            "rai:hasSyntheticData": bool(f.synthetic.get("count")),
            "rai:dataUseCases": "Training and evaluating segmentation models.",
        },
        "facts": asdict(f),
    }


def readme(document: dict) -> str:
    """``README.md``: the card for people, with the JSON beside it for programs."""
    sheet = document["datasheet"]
    comp, coll, prep = sheet["composition"], sheet["collection_process"], sheet["preprocessing_and_labelling"]
    classes = ", ".join(f"{c['index']} = {c['name']}" for c in comp["label_classes"])
    lines = [
        f"# {document['name']}",
        "",
        f"Exported {document['exported_at']} by crowdseg {document['crowdseg_version']}. "
        f"Licence: {document['licence']}.",
        "",
        "## Motivation",
        str(sheet["motivation"]),
        "",
        "## Composition",
        f"- images: {comp['images']} ({comp['training_cases']} with a label for every class)",
        f"- source formats: {json.dumps(comp['source_formats'])}",
        f"- label classes: {classes}",
        f"- gold standards: {comp['gold_standards']}",
        f"- synthetic pairs: {json.dumps(comp['synthetic'])}",
        "",
        "## Collection",
        f"- raters: {coll['raters']} (opaque ids); annotations per image: {json.dumps(coll['raters_per_image'])}",
        f"- share of annotations that accepted the AI suggestion unchanged: {coll['anchoring_share']}",
        f"- suggestion models: {', '.join(coll['suggestion_models']) or 'none recorded'}",
        "",
        "## Preprocessing and labelling",
        f"- de-identification: {json.dumps(prep['deidentification'])}",
        f"- fusion: {json.dumps(prep['fusion'])}",
        "- rater reliability per class:",
        *[f"  - {json.dumps(r)}" for r in prep["rater_reliability"]],
        "",
        "## Uses",
        f"- latest validation: {json.dumps(sheet['uses']['validation'])}",
        "",
        "## This export",
        f"- {json.dumps(document['export'])}",
        "",
        "The same card, machine-readable, with Croissant RAI fields: `datacard.json`.",
        "",
    ]
    return "\n".join(lines)
