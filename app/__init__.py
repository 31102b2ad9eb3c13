"""cx-survey: customer-journey surveys and org-hierarchy satisfaction indices."""
