"""feedback-collector: captures annotators' responses from Argilla."""
