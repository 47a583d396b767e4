"""How the report names test sets and references in headings."""

TEST_SET_TITLES = {"spec": "spec-z test set", "photo": "photo-z test set", "combined": "combined test set"}
REFERENCE_TITLES = {"label": "against the label", "true": "against the true redshift"}
