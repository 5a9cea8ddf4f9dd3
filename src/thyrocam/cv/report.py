"""cv.html: the summary table (mean ± sd over folds) and the AUC of every fold."""

from __future__ import annotations

import os
from pathlib import Path

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thyrocam cross-validation</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:64rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;
text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}caption{text-align:left;
font-weight:600}.note{color:#555;font-size:.9rem}
</style></head><body>
<h1>Cross-validation: {{ r.folds }} folds by case</h1>
<p>{{ r.n_images }} images of {{ r.n_cases }} cases from <code>{{ r.data }}</code>;
{{ "%.0f"|format(r.seconds) }} s. Labels: {{ r.label_definition }}</p>
<table><caption>Mean &plusmn; sd over folds</caption>
<tr><th>measure</th>{% for name in r.models %}<th>{{ name }}</th>{% endfor %}</tr>
{% for c in cols if r.models.values()|selectattr(c ~ '_mean', 'defined')|list %}
<tr><td>{{ c|replace('_', ' ') }}</td>{% for m in r.models.values() %}<td>
{% if m.get(c ~ '_mean') is not none %}{{ "%.3f"|format(m[c ~ '_mean'])
}} &plusmn; {{ "%.3f"|format(m[c ~ '_sd']) }}{% else %}&ndash;{% endif %}</td>{% endfor %}
</tr>{% endfor %}</table>
<table><caption>AUC per fold</caption><tr><th>model</th>
{% for k in range(r.folds) %}<th>fold {{ k + 1 }}</th>{% endfor %}</tr>
{% for name, m in r.models.items() %}<tr><td>{{ name }}</td>{% for v in m.auc %}<td>
{% if v is not none %}{{ "%.3f"|format(v) }}{% else %}&ndash;{% endif %}</td>{% endfor %}
</tr>{% endfor %}</table>
<p class="note">Sensitivity and specificity at P(malignant) &ge; {{ r.threshold }}.
Dice: predicted outline on whole frames (the input of the automatic box).
autobox hit rate: share of whole frames whose automatic box overlaps an outline's box
with IoU &ge; 0.5 (a two-panel frame outlines the nodule once per panel; either counts);
autobox hit rate largest: the same against the largest outline only.
CAM energy inside: share of Grad-CAM energy inside the radiologist's outline on the crop;
outline area share: the outline's share of the crop (what a map spread evenly would get);
centre prior inside: the same share for a Gaussian at the crop's centre, which a CAM must beat.
The three shares are over maps with positive evidence; cam empty share: the share of
outlined crops whose Grad-CAM of the malignant logit is all zero (no positive evidence).
descriptor_lr: logistic regression on the descriptors alone, the line the other models must beat.
outline_lr: logistic regression on plain statistics of the pixels inside the radiologist's
outline (level against the surroundings, texture, bright spots, edge sharpness), the line
the image networks must beat; outline_lr_auto_auc: the same regression on each image
network's own outline of the whole frame; image_plus_outline_lr_auc: its logit added to
the network's.
</p></body></html>
"""

#: The summary columns of cv.html (mean ± sd over folds), in order.
CV_COLUMNS = (
    "auc",
    "sensitivity",
    "specificity",
    "dice",
    "autobox_hit_rate",
    "autobox_hit_rate_largest",
    "descriptor_accuracy",
    "outline_lr_auto_auc",
    "image_plus_outline_lr_auc",
    "cam_energy_inside",
    "outline_area_share",
    "centre_prior_inside",
    "cam_empty_share",
    "seconds",
)


def write_cv_html(result: dict, path: str | os.PathLike) -> Path:
    """A self-contained page (no scripts, no external files) of a ``cv.json`` dict."""
    from jinja2 import Environment

    env = Environment(autoescape=True)
    html = env.from_string(_HTML).render(r=result, cols=CV_COLUMNS)
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path
