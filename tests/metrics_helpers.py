"""Reading Prometheus text with prometheus_client's own parser, for the metrics tests."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import TIMEOUT


class Scrape:
    """The samples of one scrape: `value(name, **labels)` and the set of label sets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = self.samples.get(key, 0.0) + sample.value

    def value(self, name: str, **labels: Any) -> float:
        """The sample's value; 0 when the series does not exist."""
        key = ("observable_socket_" + name, frozenset((k, str(v)) for k, v in labels.items()))
        return self.samples.get(key, 0.0)

    def has(self, name: str, **labels: Any) -> bool:
        key = ("observable_socket_" + name, frozenset((k, str(v)) for k, v in labels.items()))
        return key in self.samples

    def label_values(self, name: str, label: str) -> set[str]:
        """Every value `label` takes among the samples named `name`."""
        full = "observable_socket_" + name
        return {
            dict(labels)[label]
            for (sample, labels) in self.samples
            if sample == full and label in dict(labels)
        }

    def series(self) -> set[tuple[str, frozenset[tuple[str, str]]]]:
        return set(self.samples)


def scrape(url: str, accept: str | None = None) -> Scrape:
    """GET the metrics over real HTTP and parse them."""
    req = urllib.request.Request(url, headers={"accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as answer:
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain"), answer.headers
        return Scrape(answer.read().decode())
