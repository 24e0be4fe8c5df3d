"""Synthetic thorax PET/CT cohort and atlas bank (the `demo` dataset; docs/architecture.md#the-demo-cohort).

Anatomy is drawn once as analytic shapes in a canonical frame (`anatomy`, `station_regions`), then warped per
patient by scale, rotation and a smooth elastic field (`deformation`); nodes, tumour, CT and PET are drawn in
the patient's own frame (`nodes`, `ct`, `pet`). `cohort.generate_cohort` writes the dataset.
"""
