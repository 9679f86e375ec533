"""What a card may say about the data a dataset or model was made of: facts counted from its rows, so that the
statements about the curated public collection appear only when the data is that collection."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from covid_cxr.data.stats import confounding

# Provenance of the public sources this project knows (see ../shared/cxr/SOURCES.md).
KNOWN_SOURCES: dict[str, dict[str, str]] = {
    "ieee8023": {
        "name": "COVID-19 Image Data Collection (ieee8023/covid-chestxray-dataset)",
        "citation": 'J. P. Cohen, P. Morrison, L. Dao, K. Roth, T. Q. Duong, M. Ghassemi, "COVID-19 Image Data '
        'Collection: Prospective Predictions Are the Future", arXiv:2006.11988 (2020)',
    },
    "figure1": {
        "name": "Figure 1 COVID-19 Chest X-ray Dataset Initiative (agchung/Figure1-COVID-chestxray-dataset)",
        "citation": 'L. Wang, Z. Q. Lin, A. Wong, "COVID-Net: a tailored deep convolutional neural network design '
        'for detection of COVID-19 cases from chest X-ray images", Sci. Rep. 10, 19549 (2020)',
    },
    "hannover": {
        "name": "COVID-19 Image Repository, Hannover Medical School (ml-workgroup/covid-19-image-repository)",
        "citation": 'H. B. Winther, H. Laser, S. Gerbel, et al., "COVID-19 Image Repository", Hannover Medical '
        "School, doi:10.25835/0090041",
    },
    "covid_cxnet": {
        "name": "COVID-CXNet image collection (armiro/COVID-CXNet)",
        "citation": 'A. Haghanifar, M. M. Majdabadi, Y. Choi, S. Deivalakshmi, S. Ko, "COVID-CXNet: Detecting '
        'COVID-19 in frontal chest X-ray images using deep learning", Multimedia Tools and Applications (2022), '
        "doi:10.1007/s11042-022-12156-z",
    },
    "nih_cxr14": {
        "name": "NIH ChestX-ray14 subset (via muhammedtalo/COVID-19)",
        "citation": 'X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers, "ChestX-ray8: Hospital-scale Chest '
        'X-ray Database and Benchmarks", CVPR 2017; T. Ozturk, M. Talo, et al., Comput. Biol. Med. 121:103792 '
        "(2020)",
    },
}


RESTRICTIVE = re.compile(r"\bNC\b|-NC|\bND\b|-ND|non-?commercial|research", flags=re.IGNORECASE)


@dataclass(frozen=True)
class DataFacts:
    """Sources, how the label follows them, and licences, as counted from the rows."""

    sources: list[str]
    single_class_sources: dict[str, str]  # source -> its only label
    mixed_sources: list[str]  # sources holding both labels
    top_source: dict[str, dict[str, object]]  # label -> {"source", "share"}
    public_collection: bool  # every source is one of the public collections this project knows
    licences: list[str]  # distinct licence texts ("" when a row states none)
    restrictive_licences: list[str]  # those with non-commercial, no-derivatives or research-only terms

    @property
    def one_source(self) -> bool:
        return len(self.sources) == 1

    @property
    def confounded(self) -> bool:
        """Some source holds one label only: a model can score by recognising it."""
        return len(self.sources) > 1 and bool(self.single_class_sources)

    @property
    def licences_stated(self) -> bool:
        return any(self.licences)


def data_facts(sources: Sequence[str], labels: Sequence[str], licences: Sequence[str]) -> DataFacts:
    """Facts of rows given as parallel lists (label names, as CLASS_NAMES spells them)."""
    frame = pd.DataFrame({"source": list(sources), "label": list(labels)})
    tied = confounding(frame)
    names = sorted(set(sources))
    stated = sorted(set(licences))
    return DataFacts(
        sources=names,
        single_class_sources=tied["single_class_sources"],
        mixed_sources=tied["mixed_sources"],
        top_source=tied["top_source"],
        public_collection=all(source in KNOWN_SOURCES for source in names),
        licences=stated,
        restrictive_licences=[text for text in stated if RESTRICTIVE.search(text)],
    )
