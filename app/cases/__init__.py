"""Cases: the follow-up of unhappy customers, opened by a survey's case rule."""
