"""`covid-cxr audit`: measure what any COVID-19 chest-X-ray classifier actually reads.

Discrimination per source and where the source cannot give the label away, an occlusion test (whole film, lungs
only, lungs hidden), how readable the source is from the model's own features, and the model's facts, each figure
with a patient-bootstrap interval: `audit(model, data, output_dir, ...)` in covid_cxr.audit.run, the command in
covid_cxr.cli.audit, the model card's figures in covid_cxr.audit.card (and `run.occlusion_test` for a fine-tune's own).
"""

from covid_cxr.audit.run import AuditReport, audit

__all__ = ["AuditReport", "audit"]
