"""A run folder: `folder` writes one atomically, `load` reads it back into typed objects,
`rename` re-runs naming in place, `report_html` and `report_text` present it."""
