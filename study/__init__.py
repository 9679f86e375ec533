"""The lever study: which recipes tell COVID-19 from other chest X-rays, measured out of fold (`make quality`),
and what the trained model's scope guard, attention and lung focus do (`make study`).

It depends on the package and on devtools.measuring's helpers; the package never imports it and never reads its
results unless a command passes one in (`--cross_validation_report`).
"""
