"""The paper's baselines, on the same splits as the trained models: SUVmax thresholding and PET lesion overlap."""
